"""A run stopped by a signal, or killed after a mid-epoch checkpoint, resumes to the uninterrupted run.

Real processes (``tests/fault_driver.py``) receive real signals at named points; the rerun must end with the final
arrays (params, optimizer state, rng), ``summary.json`` and ``metrics.csv`` (but its wall times) of the uninterrupted
run (``experiment_integrity_test``'s reference). The multi-process forms are in ``training/distributed_test.py``.
"""

import json
import os
import random
import signal
import time

import chex
import numpy as np
import pytest

from experiments.run import preemption
from jaxsvd import checkpoint, data
from jaxsvd.checkpoint.workdir import LOCK_FILE
from tests.experiments.integrity_test import RUN, _final_state, _rows, _run, _steps, env, reference  # noqa: F401

ASYNC = {**RUN, "checkpoint.async_save": True}


def _assert_same_result(workdir, reference):  # noqa: F811
  a, state_a = _final_state(reference)
  b, state_b = _final_state(workdir)
  assert a.step == b.step and a.architecture == b.architecture
  chex.assert_trees_all_equal(state_a, state_b)
  assert _rows(workdir) == _rows(reference)
  with open(os.path.join(workdir, "summary.json")) as f, open(os.path.join(reference, "summary.json")) as g:
    assert json.load(f) == json.load(g)


def _assert_stopped(code, err, workdir, step, name="SIGTERM"):
  assert code == preemption.EXIT_CODE and "Traceback" not in err, err[-3000:]
  lines = [line for line in err.splitlines() if line.startswith(f"stopped by {name} after step {step} (")]
  assert lines and "run the same command again to resume (exit code 75)" in lines[-1], err[-3000:]
  assert step in _steps(workdir)
  with open(os.path.join(workdir, LOCK_FILE)) as f:
    assert f.read() == ""  # released: a clean exit empties the lock file


def test_a_signal_at_a_random_step_saves_that_step_and_the_rerun_ends_as_the_uninterrupted_run(env, reference,  # noqa: F811
                                                                                                 tmp_path):
  _, data_dir, proc_env = env
  seed = time.time_ns() % 10_000
  rng = random.Random(seed)
  step, name = rng.randint(1, 8), rng.choice(["SIGTERM", "SIGINT", "SIGUSR1"])  # step 9 ends the run
  work = str(tmp_path / "run")
  code, err = _run(work, data_dir, f"step:{step}:{name}", proc_env, ASYNC)
  _assert_stopped(code, err, work, step, name)
  rows = _rows(work) if os.path.exists(os.path.join(work, "metrics.csv")) else []
  assert len(rows) == step // 3, f"seed {seed}"  # rows of whole epochs only
  meta = checkpoint.read_meta(os.path.join(work, "checkpoints"), step)
  if step % 3:
    assert meta["epoch"] == step // 3 and meta["epoch_progress"]["batches"] == step % 3, f"seed {seed}"
  code, err = _run(work, data_dir, "none", proc_env, ASYNC)
  assert code == 0, err[-3000:]
  _assert_same_result(work, reference)


def test_signals_in_a_pruning_epoch_and_during_the_stop_save_keep_the_run(env, reference, tmp_path):  # noqa: F811
  """SIGTERM inside epoch 2's pruning event: the epoch ends (prune, async save of step 6), then the run stops; a
  second SIGTERM while that save commits changes nothing."""
  _, data_dir, proc_env = env
  work = str(tmp_path / "run")
  code, err = _run(work, data_dir, "prune:1:SIGTERM,stopping:1:SIGTERM", proc_env, ASYNC)
  _assert_stopped(code, err, work, 6)
  assert "received SIGTERM again" in err
  assert checkpoint.read_meta(os.path.join(work, "checkpoints"), 6)["pruning_events"]  # the prune was kept
  code, err = _run(work, data_dir, "none", proc_env, ASYNC)
  assert code == 0, err[-3000:]
  _assert_same_result(work, reference)


def test_kill_after_a_mid_epoch_checkpoint_resumes_inside_the_epoch(env, reference, tmp_path):  # noqa: F811
  _, data_dir, proc_env = env
  work = str(tmp_path / "run")
  every = {**RUN, "checkpoint.every_steps": 2, "checkpoint.max_to_keep": 5}
  code, err = _run(work, data_dir, "step:5:SIGKILL", proc_env, every)
  assert code == -signal.SIGKILL, err[-3000:]
  assert _steps(work) == [2, 3, 4]  # 2 and 4 mid-epoch, 3 an epoch end
  progress = checkpoint.read_meta(os.path.join(work, "checkpoints"), 4)["epoch_progress"]
  assert progress["epoch"] == 2 and progress["batches"] == 1
  code, err = _run(work, data_dir, "none", proc_env, every)
  assert code == 0, err[-3000:]
  assert "resumed from" in err and "step 4 (epoch 2, batch 1," in err
  _assert_same_result(work, reference)


def test_stop_request_records_signals_and_restores_the_handlers(caplog):
  before, before_term = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
  with caplog.at_level("WARNING", logger="jaxsvd"):
    with preemption.StopRequest("SIGUSR1") as stop:
      assert not stop.requested(1)
      os.kill(os.getpid(), signal.SIGUSR1)
      os.kill(os.getpid(), signal.SIGTERM)
      assert stop.requested(2) and stop.received == "SIGUSR1"
  assert signal.getsignal(signal.SIGUSR1) is before and signal.getsignal(signal.SIGTERM) is before_term
  assert "received SIGUSR1: finishing the current step" in caplog.text and "received SIGTERM again" in caplog.text
  with preemption.StopRequest("none") as stop:
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.parametrize("extra, every, message", [
    ("SIGKILL", 1, "checkpoint.stop_signal: 'SIGKILL' is not one of"),
    ("SIGUSR1", 0, "checkpoint.stop_sync_every"),
])
def test_stop_fields_are_one_line_errors(extra, every, message):
  with pytest.raises(ValueError, match=message):
    preemption.StopRequest(extra, every)


def test_mid_epoch_batches_are_the_full_epochs_tail():
  images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 1), np.uint8)
  labels = np.arange(40) % 10
  args = (images, labels, 8, [3, 4], 2, 0.5, 0.25, True)
  full = list(data.train_batches(*args))
  tail = list(data.train_batches(*args, start=3))
  assert len(full) == 5 and len(tail) == 2
  chex.assert_trees_all_equal(tail, full[3:])  # the skipped batches' crop/flip draws were consumed
