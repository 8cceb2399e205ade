"""Runs that are killed, corrupted, doubled or diverge end where an uninterrupted run ends, or stop with one line.

The kill tests run ``tests/fault_driver.py`` in subprocesses that die (``os._exit``, or SIGKILL from here) at named
points; every run shares one persistent compilation cache, and evaluation is pinned to one program, so the
resumed run must match the uninterrupted one bit for bit: arrays, rotation and metrics.csv (but its wall times).
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import pytest

from experiments.run import loop
from jaxsvd import checkpoint
from jaxsvd.checkpoint import integrity
from jaxsvd.checkpoint.workdir import LOCK_FILE
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIME_COLUMNS = ("time_train", "time_eval", "time_prune", "images_per_sec")
STEPS_PER_EPOCH = helpers.TINY["max_steps_per_epoch"]


RUN = {"num_epochs": 3}  # epochs 1-2 train, online + final prune after 2, epoch 3 fine-tunes: two programs


def _cache_dir(tmp_path_factory):
  """One persistent compilation cache per pytest session, shared by the xdist workers."""
  base = tmp_path_factory.getbasetemp()
  return str((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "integrity_jax_cache")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("integrity")
  data_dir = helpers.write_fashion_mnist(str(root / "data"))
  proc_env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXSVD_XLA_OPTIONS": "0",
              "JAX_COMPILATION_CACHE_DIR": _cache_dir(tmp_path_factory),
              "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
  return root, data_dir, proc_env


def _driver(workdir, data_dir, fault, proc_env, overrides=None, hold=False):
  cmd = [sys.executable, "-m", "tests.fault_driver", str(workdir), data_dir, fault, json.dumps(overrides or RUN)]
  return subprocess.Popen(cmd, cwd=REPO, env={**proc_env, **({"FAULT_HOLD": "1"} if hold else {})},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(workdir, data_dir, fault, proc_env, overrides=None):
  proc = _driver(workdir, data_dir, fault, proc_env, overrides)
  _, err = proc.communicate()
  return proc.returncode, err


@pytest.fixture(scope="module")
def reference(env):
  """The uninterrupted run."""
  root, data_dir, proc_env = env
  code, err = _run(root / "reference", data_dir, "none", proc_env)
  assert code == 0, err[-3000:]
  return str(root / "reference")


def _steps(workdir):
  return checkpoint.steps(os.path.join(workdir, "checkpoints"))


def _rows(workdir):
  with open(os.path.join(workdir, "metrics.csv"), newline="") as f:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def _final_state(workdir):
  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  train_item = checkpoint.restore_train(restored.directory, restored.step, _abstract_opt_state(restored))
  return restored, {"variables": restored.variables, "opt_state": train_item["opt_state"],
                    "rng": jax.random.key_data(train_item["rng"])}


def _abstract_opt_state(restored):
  from ml_collections import ConfigDict
  c = ConfigDict(restored.meta["config"])
  tx = loop.make_tx(c, c.max_steps_per_epoch, restored.architecture, restored.variables["params"])
  return jax.eval_shape(tx.init, restored.variables["params"])


def _assert_same_run(workdir, reference):
  a, state_a = _final_state(reference)
  b, state_b = _final_state(workdir)
  assert a.step == b.step and a.architecture == b.architecture
  chex.assert_trees_all_equal(state_a, state_b)
  assert _rows(workdir) == _rows(reference)
  assert _steps(workdir) == _steps(reference)


def _wait_for(path, proc):
  while not os.path.exists(path):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    time.sleep(0.2)


@pytest.mark.slow
def test_kills_at_named_points_resume_to_the_uninterrupted_run(env, reference):
  """Kill between a metrics row and its commit, inside a pruning event, and (SIGKILL, lock held) during a save while
  a second process tries the workdir: the final arrays, metrics.csv and kept steps equal the uninterrupted run's."""
  root, data_dir, proc_env = env
  work = root / "killed"
  code, err = _run(work, data_dir, "metrics:1", proc_env)  # epoch 1's row written, its checkpoint not
  assert code == 17, err[-3000:]
  assert _steps(work) == [] and len(_rows(work)) == 1

  code, err = _run(work, data_dir, "prune:1", proc_env)  # starts afresh; dies in epoch 2's online prune
  assert code == 17, err[-3000:]
  assert _steps(work) == [STEPS_PER_EPOCH] and len(_rows(work)) == 1  # the row without a checkpoint is gone

  holder = _driver(work, data_dir, "before_commit:1", proc_env, hold=True)  # epoch 2's save: files, no rename
  _wait_for(str(work) + ".ready", holder)
  second = subprocess.run([sys.executable, "-m", "experiments.cifar_svd",
                           "--config=experiments/configs/fashion_mnist.py", f"--workdir={work}",
                           *helpers.cli_flags(data_dir, **RUN)], cwd=REPO, env=proc_env, capture_output=True, text=True)
  lines = second.stderr.strip().splitlines()
  assert second.returncode != 0 and "Traceback" not in second.stderr
  assert lines[-1].startswith("error: workdir") and f"in use by pid {holder.pid} " in lines[-1], second.stderr
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  assert _steps(work) == [STEPS_PER_EPOCH] and len(_rows(work)) == 2
  assert any(".orbax-checkpoint-tmp" in d for d in os.listdir(work / "checkpoints"))  # the torn save

  code, err = _run(work, data_dir, "none", proc_env)  # the stale lock does not block: taken over, logged
  assert code == 0, err[-3000:]
  assert "taking over from pid" in err
  assert not any(".orbax-checkpoint-tmp" in d for d in os.listdir(work / "checkpoints"))
  _assert_same_run(str(work), reference)


def _flip_a_byte(step_dir):
  files = integrity.read_checksums(step_dir)
  rel = max((r for r in files if r.startswith("model/") and "/d/" in r), key=lambda r: files[r][0])
  path = os.path.join(step_dir, *rel.split("/"))
  with open(path, "r+b") as f:
    f.seek(files[rel][0] // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x01]))
  return rel


@pytest.mark.slow
def test_flipped_byte_is_one_line_and_fallback_resumes_to_the_same_run(env, reference, tmp_path):
  _, data_dir, proc_env = env
  work = tmp_path / "run"
  shutil.copytree(reference, work, ignore=shutil.ignore_patterns(LOCK_FILE))
  last = _steps(work)[-1]
  rel = _flip_a_byte(os.path.join(work, "checkpoints", str(last)))
  with pytest.raises(checkpoint.CheckpointError) as err:  # fails before anything compiles
    loop.run(helpers.tiny_config(data_dir, **RUN), str(work))
  message = str(err.value)
  assert "\n" not in message and f"checkpoint step {last} is damaged: file {rel} fails its CRC-32" in message
  assert "restore_fallback=True" in message
  with pytest.raises(checkpoint.CheckpointError, match=f"step {last} is damaged: file {rel}"):
    checkpoint.restore(os.path.join(work, "checkpoints"))

  code, err = _run(work, data_dir, "none", proc_env, {**RUN, "checkpoint.restore_fallback": True})
  assert code == 0, err[-3000:]
  assert f"checkpoint step {last} is unusable" in err
  assert os.path.isdir(os.path.join(work, "corrupt_checkpoints", str(last)))
  _assert_same_run(str(work), reference)  # the previous step resumed, the last epoch retrained: the same run


SHORT = {"num_epochs": 2, "finetune_epochs": 0, "pruning.enabled": False, "final_prune.enabled": False}


def test_kill_between_metrics_row_and_commit_leaves_each_row_exactly_once(env, tmp_path):
  """The unmarked, short form of the kill test (no duplicate metrics rows): killed after epoch 2's row is written
  but before its checkpoint commits; the rerun's metrics.csv is exactly the committed history, every column."""
  _, data_dir, proc_env = env
  work = tmp_path / "run"
  code, err = _run(work, data_dir, "metrics:2", proc_env, SHORT)
  assert code == 17, err[-3000:]
  assert _steps(work) == [STEPS_PER_EPOCH] and [r["epoch"] for r in _rows(work)] == ["1", "2"]
  code, err = _run(work, data_dir, "none", proc_env, SHORT)
  assert code == 0, err[-3000:]
  history = checkpoint.restore(os.path.join(work, "checkpoints")).meta["history"]
  with open(os.path.join(work, "metrics.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  assert rows == [{k: str(v) for k, v in h.items()} for h in history] and [r["epoch"] for r in rows] == ["1", "2"]


def test_non_finite_update_is_never_saved(env, tmp_path):
  """NaN params after the *last* update of epoch 2 (that epoch's mean loss is finite): epoch 2 is neither written
  nor saved and the one line names epoch 1's step; NaN in the first epoch: it says no checkpoint exists."""
  _, data_dir, proc_env = env
  for bad_step in (2 * STEPS_PER_EPOCH, 1):
    work = str(tmp_path / f"run{bad_step}")
    code, err = _run(work, data_dir, f"nan:{bad_step}", proc_env, SHORT)
    message = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err, err[-3000:]
    assert message.startswith(f"error: training became non-finite at step {bad_step} ")
    if bad_step == 1:
      assert message.endswith("no checkpoint has been saved yet (the run stopped before its first save)")
      assert _steps(work) == [] and not os.path.exists(os.path.join(work, "metrics.csv"))
    else:
      assert f"in epoch 2; stopped without saving it: the last good checkpoint is step {STEPS_PER_EPOCH} (epoch 1)" \
          in message
      assert _steps(work) == [STEPS_PER_EPOCH] and [r["epoch"] for r in _rows(work)] == ["1"]
      assert integrity.nonfinite_leaves(checkpoint.restore(os.path.join(work, "checkpoints")).variables) == []
