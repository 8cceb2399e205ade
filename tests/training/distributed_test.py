"""Multi-process data parallelism on localhost (jax.distributed, gloo CPU collectives): 2 processes × 2 CPU
devices train like 1 process × 4 devices across a pruning event, with identical pruning decisions on both; a
killed process ends the job with a clear error, and the run resumes from its last checkpoint (on another process
count). Unmarked: the library-level job (tests/multiprocess_worker.py) and the kill; slow: the same through the
whole experiment loop (Orbax multi-process checkpoints, export). Every subprocess is time-bounded and killed on exit."""

import os
import signal
import socket
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from experiments.run import loop, preemption
from jaxsvd import checkpoint
from jaxsvd.checkpoint.workdir import LOCK_FILE
from jaxsvd.training import distributed
from tests import helpers, multiprocess_worker
from tests.checkpoint.integrity_test import _hold_lock_in_subprocess
from tests.experiments.integrity_test import _flip_a_byte

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = {"num_epochs": 2, "pruning.start": 1, "parallel": "sharding"}  # online + final prune after epoch 1
TIMEOUT_S = 420  # bound on a whole 2-process run (compiles dominate; generous for a loaded 2-core machine)


def _config(data_dir, **overrides):
  c = helpers.tiny_config(data_dir, **{**RUN, **overrides})
  c.optimizer.update(optimizer="sgd", learning_rate=0.005, momentum=0.9, schedule="constant")
  return c


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, data_dir, num_processes=2, devices=2, extra=()):
  """Starts the job's processes (one command each, as on a cluster; ``extra``: more flags); returns
  [(Popen, log path)]."""
  port = _free_port()
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  flags = helpers.cli_flags(data_dir, **RUN) + [
      "--config.optimizer.optimizer=sgd", "--config.optimizer.learning_rate=0.005",
      "--config.optimizer.momentum=0.9", "--config.optimizer.schedule=constant"]
  procs = []
  for i in range(num_processes):
    log = os.path.join(workdir + f".{i}.log")
    cmd = [sys.executable, "-m", "experiments.cifar_svd", "--config=experiments/configs/fashion_mnist.py",
           f"--workdir={workdir}", *flags, f"--coordinator_address=localhost:{port}",
           f"--num_processes={num_processes}", f"--process_id={i}", "--heartbeat_timeout=5", *extra]
    procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT), log))
  return procs


def _wait(procs, timeout):
  deadline = time.monotonic() + timeout
  for proc, _ in procs:
    proc.wait(timeout=max(deadline - time.monotonic(), 1))
  return [(proc.returncode, open(log).read()) for proc, log in procs]


def _launch_worker(tmp_path, mode, num_processes=2, devices=2):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  coordinator = f"localhost:{_free_port()}"
  procs = []
  for i in range(num_processes):
    log = str(tmp_path / f"{mode}.{i}.log")
    cmd = [sys.executable, "-m", "tests.multiprocess_worker", mode, coordinator, str(num_processes), str(i),
           str(tmp_path / f"out.{i}.npz")]
    procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT), log))
  return procs


@pytest.fixture
def job():
  """Launches jobs (``job(workdir, data_dir)``: the experiment; ``job.worker(tmp_path, mode)``: the worker);
  kills whatever is still running when the test ends."""
  started = []

  def launch(*args, **kwargs):
    started.extend(procs := _launch(*args, **kwargs))
    return procs

  def worker(*args, **kwargs):
    started.extend(procs := _launch_worker(*args, **kwargs))
    return procs

  launch.worker = worker
  yield launch
  for proc, _ in started:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")), n_train=192, n_test=48)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
  """1 process × 4 devices, the same config."""
  workdir = str(tmp_path_factory.mktemp("one_process"))
  loop.run(_config(data_dir, num_devices=4), workdir)
  return checkpoint.restore(os.path.join(workdir, "checkpoints"))


def _pruning_lines(log):
  return [line for line in log.splitlines() if "prune after epoch" in line]


def test_two_processes_match_one_process_across_a_prune(tmp_path, job):
  results = _wait(job.worker(tmp_path, "train"), TIMEOUT_S)
  for code, log in results:
    assert code == 0, log[-3000:]
  outputs = [dict(np.load(tmp_path / f"out.{i}.npz")) for i in range(2)]
  chex.assert_trees_all_equal(outputs[0], outputs[1])  # same pruning decisions and params on both processes
  params, ranks, before = multiprocess_worker.train_prune_train(num_devices=4)  # 1 process × 4 devices, here
  assert {k[5:]: int(v) for k, v in outputs[0].items() if k.startswith("rank:")} == ranks
  assert sum(ranks.values()) < sum(before.values())  # the prune happened
  chex.assert_trees_all_close({k: v for k, v in outputs[0].items() if not k.startswith("rank:")}, params,
                              atol=1e-5, rtol=1e-4)


def test_killed_process_stops_the_job_with_a_clear_error(tmp_path, job):
  results = _wait(job.worker(tmp_path, "die"), 90)  # heartbeat timeout 5 s
  assert results[1][0] == -signal.SIGKILL
  code, log = results[0]
  assert code != 0 and "process 0 finished" not in log
  assert "stopped sending heartbeats" in log or "another task died" in log, log[-3000:]


@pytest.mark.slow
def test_experiment_two_processes_train_like_one_process(data_dir, reference, tmp_path, job):
  workdir = str(tmp_path / "run")
  results = _wait(job(workdir, data_dir), TIMEOUT_S)
  for code, log in results:
    assert code == 0, log[-3000:]
  decisions = [_pruning_lines(log) for _, log in results]
  assert len(decisions[0]) == 2 and decisions[0] == decisions[1]  # each process pruned the same ranks
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))  # written by both, readable by one
  assert final.architecture.ranks == reference.architecture.ranks
  assert final.architecture.ranks != final.architecture.original_ranks
  chex.assert_trees_all_close(final.variables, reference.variables, atol=5e-4, rtol=1e-3)
  with open(os.path.join(workdir, "metrics.csv")) as f:
    assert len(f.read().splitlines()) == 1 + RUN["num_epochs"]  # one header, one row per epoch: process 0 only


@pytest.mark.slow
def test_experiment_killed_process_ends_the_job_and_the_run_resumes(data_dir, reference, tmp_path, job):
  workdir = str(tmp_path / "run")
  procs = job(workdir, data_dir)
  first = os.path.join(workdir, "checkpoints", "3", "meta")  # epoch 1's checkpoint (3 steps), finalized
  deadline = time.monotonic() + TIMEOUT_S
  while not os.path.isdir(first):
    assert time.monotonic() < deadline and all(p.poll() is None for p, _ in procs), open(procs[0][1]).read()[-3000:]
    time.sleep(0.2)
  procs[1][0].send_signal(signal.SIGKILL)
  code, log = _wait(procs[:1], 120)[0]  # heartbeat timeout 5 s: the survivor stops soon after
  assert code != 0
  assert "stopped sending heartbeats" in log or "another task died" in log, log[-3000:]
  c = _config(data_dir, num_devices=4)  # rerun (here: 1 process × 4 devices) resumes from step 3
  loop.run(c, workdir)
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert final.meta["epoch"] == RUN["num_epochs"] and final.architecture.ranks == reference.architecture.ranks
  chex.assert_trees_all_close(final.variables, reference.variables, atol=5e-4, rtol=1e-3)


def test_detected_cluster_and_argument_errors():
  assert distributed.detected_cluster({}) is None
  assert distributed.detected_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is None  # one task: no job
  assert distributed.detected_cluster({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}) == "slurm"
  assert distributed.detected_cluster({"TPU_WORKER_HOSTNAMES": "a,b"}) == "cloud_tpu_multihost"
  assert not distributed.initialize("auto")  # nothing set, no cluster: single process, nothing started
  with pytest.raises(ValueError, match="process_id"):
    distributed.initialize("on", "localhost:1", 2, 2)
  with pytest.raises(ValueError, match="distributed"):
    distributed.initialize("sometimes")


@pytest.mark.parametrize("mode", ["stop-one", "stop-all"])
def test_a_signal_to_one_or_every_process_stops_all_after_the_same_step(tmp_path, job, mode):
  """SIGTERM after step 3 (to process 1, or to both), checks every 2 steps: both stop after step 4."""
  for code, log in _wait(job.worker(tmp_path, mode), 120):
    assert code == 0, log[-3000:]
  assert [int(np.load(tmp_path / f"out.{i}.npz")["stopped_after"]) for i in range(2)] == [4, 4]


def test_the_lock_refuses_a_second_two_process_job_on_every_process(data_dir, tmp_path, job):
  workdir = tmp_path / "run"
  holder = _hold_lock_in_subprocess(workdir)
  try:
    results = _wait(job(str(workdir), data_dir), 180)
  finally:
    holder.kill()
    holder.wait()
  for i, (code, log) in enumerate(results):
    errors = [line for line in log.splitlines() if line.startswith("error: ")]  # gloo may log after it
    assert code == 1 and len(errors) == 1, log[-3000:]
    assert errors[0].startswith(f"error: workdir {workdir} is in use by "), log[-3000:]
    assert f"pid {holder.pid} " in errors[0] if i == 0 else "process 0 could not lock it" in errors[0]


def _wait_for_lock(workdir, procs):
  lock = os.path.join(workdir, LOCK_FILE)
  deadline = time.monotonic() + TIMEOUT_S
  while not (os.path.exists(lock) and os.path.getsize(lock)):
    assert time.monotonic() < deadline and all(p.poll() is None for p, _ in procs), open(procs[0][1]).read()[-3000:]
    time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("targets", [(1,), (0, 1)])
def test_experiment_signal_stops_every_process_at_one_step_and_the_run_resumes(data_dir, reference, tmp_path, job,
                                                                               targets):
  workdir = str(tmp_path / "run")
  procs = job(workdir, data_dir, extra=["--config.checkpoint.stop_sync_every=1"])
  _wait_for_lock(workdir, procs)  # process 0 holds the workdir: both are set up or close to it
  for i in targets:
    procs[i][0].send_signal(signal.SIGTERM)
  results = _wait(procs, TIMEOUT_S)
  stops = [[line for line in log.splitlines() if line.startswith("stopped by ")] for _, log in results]
  for (code, log), lines in zip(results, stops):
    assert code == preemption.EXIT_CODE and len(lines) == 1, log[-3000:]
  step = int(stops[0][0].split("after step ")[1].split()[0])
  assert stops[1][0].split(" (")[0].endswith(f"after step {step}")  # the same step on both
  assert checkpoint.steps(os.path.join(workdir, "checkpoints"))[-1] == step
  loop.run(_config(data_dir, num_devices=4), workdir)  # the rerun (1 process × 4 devices) finishes the run
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert final.architecture.ranks == reference.architecture.ranks
  chex.assert_trees_all_close(final.variables, reference.variables, atol=5e-4, rtol=1e-3)


def test_two_processes_fall_back_from_a_damaged_step_to_a_mid_epoch_one(data_dir, reference, tmp_path, job):
  workdir = str(tmp_path / "run")
  c = _config(data_dir, num_devices=4)
  c.checkpoint.every_steps = 2
  loop.run(c, workdir, stop_after_epoch=1)  # steps 2 (mid-epoch) and 3
  _flip_a_byte(os.path.join(workdir, "checkpoints", "3"))
  results = _wait(job(workdir, data_dir, extra=["--config.checkpoint.restore_fallback=True"]), TIMEOUT_S)
  for code, log in results:
    assert code == 0, log[-3000:]
    assert "checkpoint step 3 is unusable" in log and "step 2 (epoch 1, batch 2," in log
  assert os.listdir(os.path.join(workdir, "corrupt_checkpoints")) == ["3"]  # moved once, by process 0
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert final.architecture.ranks == reference.architecture.ranks
  chex.assert_trees_all_close(final.variables, reference.variables, atol=5e-4, rtol=1e-3)
