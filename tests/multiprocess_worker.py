"""A worker process for tests/training/distributed_test.py (not a test file): small multi-process jobs on jaxsvd directly.

  python -m tests.multiprocess_worker train <coordinator> <num_processes> <process_id> <out.npz>
      2 SGD steps on a global batch → rank prune of the host state → model rebuilt → 2 more steps; writes the
      params and ranks. Every process holds the same global batch (DataParallel's global path) for the first two
      steps and only its rows (the streaming pipeline's local path) for the last two.
  python -m tests.multiprocess_worker die <coordinator> <num_processes> <process_id>
      process 1 SIGKILLs itself after start-up; the others wait in a cross-process barrier.
  python -m tests.multiprocess_worker stop-one|stop-all <coordinator> <num_processes> <process_id> <out.npz>
      a loop of steps under ``experiments.run.preemption.StopRequest`` (sync every 2 steps); after step 3 process 1 (or
      every process) sends itself SIGTERM; each process writes the step after which it was told to stop.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxsvd import pruning
from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training import optim
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.parallel import DataParallel
from jaxsvd.training.train_state import TrainState

BATCH = 16
REG = RegularizerConfig()  # plain cross-entropy: the smallest program to compile (the loop test has the terms)


def _state(variables, ranks=None):
  model = build_model("resnet8", 10, SVDSpec(), ranks=ranks)
  tx = optim.make_optimizer(dict(optimizer="sgd", learning_rate=0.005, momentum=0.9), variables["params"], 10, 1)
  return TrainState.create(model.apply, variables, tx)


def _batch(step: int) -> dict:
  rng = np.random.default_rng(step)
  return {"image": rng.normal(size=(BATCH, 16, 16, 1)).astype(np.float32),
          "label": rng.integers(0, 10, BATCH).astype(np.int32)}


def _local_rows(par: DataParallel, batch: dict) -> dict:
  """This process's rows of a global batch: those its devices hold in the batch-sharded global array."""
  sharding = jax.sharding.NamedSharding(par.mesh, jax.sharding.PartitionSpec("batch"))
  starts = sorted(idx[0].start or 0 for idx in sharding.addressable_devices_indices_map((BATCH,)).values())
  rows = slice(starts[0], starts[0] + BATCH // jax.process_count())
  return {k: v[rows] for k, v in batch.items()}


def train_prune_train(num_devices: int | None = None) -> tuple[dict, dict, dict]:
  """(host params by path, ranks, ranks before the prune) after 2 steps, a 25 % rank prune and 2 steps, on every
  device of the job."""
  par = DataParallel("sharding", num_devices)
  model = build_model("resnet8", 10, SVDSpec())
  variables = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 16, 16, 1), np.float32))
  state = par.place(_state(jax.device_get(variables)))
  for step in range(2):
    state, _ = par.train_step(state, par.shard_batch(_batch(step)), REG)
  host = par.host_state(state)
  params, ranks, _ = pruning.prune(host.params, pruning.Strategy("ratio", reduce_by=0.25))
  state = par.place(_state({"params": jax.device_get(params), **host.model_state}, ranks))
  for step in range(2, 4):
    local = _local_rows(par, _batch(step)) if par.multiprocess else _batch(step)
    state, _ = par.train_step(state, par.shard_batch(local, local=par.multiprocess), REG)
  final = par.host_state(state)
  params = {k: np.asarray(v) for k, v in leaves_by_path(final.params).items()}
  return params, read_ranks(final.params), read_ranks(host.params)


def stop_loop(signalled: bool, max_steps: int = 20) -> int:
  """The step after which ``StopRequest.requested`` first said stop (every process must get the same); -1: never.
  Each step is a small cross-process computation, so the processes advance in lockstep as training steps do."""
  from experiments.run import preemption

  with preemption.StopRequest("SIGUSR1", sync_every=2) as stop:
    for step in range(1, max_steps + 1):
      multihost_utils.process_allgather(np.float32(step))  # a step's collective
      if signalled and step == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      if stop.requested(step):
        return step
  return -1


def main(argv):
  mode, coordinator, num_processes, process_id = argv[1], argv[2], int(argv[3]), int(argv[4])
  jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=120,
                             heartbeat_timeout_seconds=5)
  if mode == "train":
    params, ranks, _ = train_prune_train()
    np.savez(argv[5], **params, **{f"rank:{k}": v for k, v in ranks.items()})
  elif mode.startswith("stop"):
    np.savez(argv[5], stopped_after=stop_loop(signalled=mode == "stop-all" or process_id == 1))
  elif process_id == 1:
    os.kill(os.getpid(), signal.SIGKILL)
  else:
    time.sleep(1)
    multihost_utils.sync_global_devices("never reached by the killed process")
  print(f"process {process_id} finished", flush=True)


if __name__ == "__main__":
  main(sys.argv)
