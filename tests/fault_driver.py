"""A tiny training run in its own process that dies at a named point (tests/experiments/integrity_test.py).

  python -m tests.fault_driver WORKDIR DATA_DIR FAULT [OVERRIDES_JSON]     (config: helpers.tiny_config + overrides)

FAULT is 'none', 'nan:K' (update K of the run adds NaN to the params), 'POINT:N': at the N-th time the run
reaches POINT the process ends with ``os._exit(17)`` (no cleanup, no flush, as a kill), or, with FAULT_HOLD=1 in
the environment, writes WORKDIR.ready and sleeps until killed; or 'POINT:N:SIGNAL': there the process sends itself
SIGNAL (e.g. SIGTERM, SIGUSR1, SIGKILL) and goes on. Points:
  metrics              after an epoch's metrics row is written, before that epoch's checkpoint is saved
  prune                inside a pruning event (its result computed, nothing saved)
  before_commit        during a save: the step's files and checksums written, Orbax's commit rename not done
  after_commit         after the commit rename, before Orbax deletes the steps rotation drops
  step                 after a training step (the N-th of this process)
  save                 right after ``checkpoint.save`` returned (an async save is in flight)
  stopping             a stop request is being honoured: its checkpoint is being committed
Several faults may be given, separated by commas.
Evaluation is pinned to one compiled program (no autotuning by timing), so two runs log identical test metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time


def _arm(point: str, count: int, workdir: str, signal_name: str | None = None) -> None:
  import jaxsvd.checkpoint
  from experiments.report.metrics import MetricsWriter
  from experiments.run import epoch, loop
  from experiments.run.methods import rank
  from jaxsvd.checkpoint import integrity

  calls = {"n": 0}

  def hit(name: str) -> None:
    if name != point:
      return
    calls["n"] += 1
    if calls["n"] != count:
      return
    if signal_name is not None:
      os.kill(os.getpid(), getattr(signal, signal_name))
      return
    if os.environ.get("FAULT_HOLD"):
      open(workdir + ".ready", "w").write(str(os.getpid()))
      time.sleep(600)
    os._exit(17)

  write = MetricsWriter.write

  def write_then_hit(self, row):
    write(self, row)
    hit("metrics")

  apply = rank.RankPrune.apply

  def apply_then_hit(self, *args, **kwargs):
    out = apply(self, *args, **kwargs)
    hit("prune")
    return out

  finalize = integrity.ChecksummedTemporaryPath.finalize

  async def finalize_with_hits(self, *args, **kwargs):
    is_step = self.get_final().name.isdigit()
    if is_step:
      await asyncio.to_thread(integrity.write_checksums, os.fspath(self.get()))
      hit("before_commit")
      await super(integrity.ChecksummedTemporaryPath, self).finalize(*args, **kwargs)
      hit("after_commit")
    else:
      await finalize(self, *args, **kwargs)

  add, save = epoch.Progress.add, jaxsvd.checkpoint.save

  def add_then_hit(self, metrics):
    add(self, metrics)
    hit("step")

  def save_then_hit(*args, **kwargs):
    save(*args, **kwargs)
    hit("save")

  stopped = loop.stopped

  def hit_then_stopped(*args, **kwargs):
    hit("stopping")
    return stopped(*args, **kwargs)

  loop.stopped = hit_then_stopped
  epoch.Progress.add = add_then_hit
  jaxsvd.checkpoint.save = save_then_hit
  MetricsWriter.write = write_then_hit
  rank.RankPrune.apply = apply_then_hit
  integrity.ChecksummedTemporaryPath.finalize = finalize_with_hits


def poison_updates(make_tx, bad_step: int):
  """``make_tx`` whose update number ``bad_step`` (1-based) adds NaN to every param; that step's loss is still finite.
  The step number rides in the optimizer state, so the compiled step is the same for every ``bad_step``."""
  import jax
  import jax.numpy as jnp
  import optax

  def init(params):
    return jnp.zeros((), jnp.int32), jnp.int32(bad_step)

  def update(updates, state, params=None):
    count, target = state
    nan = jnp.where(count + 1 == target, jnp.nan, 0.0)
    return jax.tree.map(lambda u: u + nan, updates), (count + 1, target)

  return lambda *args: optax.chain(make_tx(*args), optax.GradientTransformation(init, update))


def main(argv: list[str]) -> None:
  workdir, data_dir, fault = argv[:3]
  overrides = json.loads(argv[3]) if len(argv) > 3 else {}
  from jaxsvd.training import parallel

  parallel.EVAL_VARIANTS = {}  # with JAXSVD_XLA_OPTIONS=0 (set by the test): one eval program, no timing choice
  from experiments.run import loop, preemption
  from tests import helpers

  for one in fault.split(","):
    point, count, *signal_name = one.split(":") if one != "none" else ("none", 0)
    if point == "nan":
      loop.make_tx = poison_updates(loop.make_tx, int(count))
    elif point != "none":
      _arm(point, int(count), workdir, *signal_name)
  logging.getLogger("jaxsvd").addHandler(logging.StreamHandler())
  logging.getLogger("jaxsvd").setLevel(logging.INFO)
  try:
    loop.run(helpers.tiny_config(data_dir, **overrides), workdir)
  except preemption.Stopped:  # as the CLI reports it
    sys.exit(preemption.EXIT_CODE)
  except (ValueError, OSError, FloatingPointError) as err:
    sys.exit(f"error: {err}")


if __name__ == "__main__":
  main(sys.argv[1:])
