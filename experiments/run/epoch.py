"""One epoch of training and the evaluation after it, resumable from any step inside the epoch.

``Progress`` is how far an epoch got: the batches done and the running sums of their step metrics. A mid-epoch
checkpoint stores it (JSON, exact float32 sums) with the data position, so a resume trains exactly the batches that
would have come next (the in-memory order is a function of (seed, epoch); a stream's position is restored) and the
epoch's metrics row equals an uninterrupted epoch's, except its wall-time columns.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from experiments.run import recovery
from jaxsvd.training.parallel import DataParallel


@dataclasses.dataclass
class Progress:
  """How far epoch ``epoch`` got: ``batches`` done, the sums of their step metrics (device arrays while training;
  float32 host scalars after ``from_json``), the training seconds so far, and the 'finite' flags of the steps since
  the last check (the first of them is step ``first_step`` + 1)."""
  epoch: int
  batches: int = 0
  sums: dict | None = None
  seconds: float = 0.0
  first_step: int = 0
  finite: list = dataclasses.field(default_factory=list)

  def add(self, metrics: dict) -> None:
    """Counts one step: its 'finite' flag kept for ``check_finite``, the rest added to the sums."""
    self.finite.append(metrics.pop("finite"))
    self.sums = metrics if self.sums is None else jax.tree.map(jnp.add, self.sums, metrics)
    self.batches += 1

  def check_finite(self, par: DataParallel) -> None:
    """Raises ``recovery.NonFiniteError`` if a step since the last check was non-finite; then forgets those flags."""
    flags = par.metrics(self.finite)
    if not all(flags):
      recovery.check_finite(flags, self.first_step, par.metrics(self.sums)["loss"] / self.batches)
    self.first_step += len(self.finite)
    self.finite = []

  def to_json(self, par: DataParallel) -> dict:
    """The checkpoint entry (after ``check_finite``): epoch, batches, seconds and the sums as exact floats."""
    sums = {} if self.sums is None else par.metrics(self.sums)
    return {"epoch": self.epoch, "batches": self.batches, "seconds": self.seconds, "sums": sums}

  @classmethod
  def from_json(cls, entry: dict, first_step: int) -> Progress:
    """The progress a mid-epoch checkpoint stored (its sums as float32 scalars, which add exactly as they did)."""
    sums = {k: np.float32(v) for k, v in entry["sums"].items()} or None
    return cls(entry["epoch"], entry["batches"], sums, entry["seconds"], first_step)


def train_epoch(c, par: DataParallel, state, batches, reg, progress: Progress, total: int, local: bool = False,
                after_step: Callable[[Any, Progress, bool], None] | None = None, shown: Sequence[str] = ("loss",),
                examples: str = "examples"):
  """Runs ``par.train_step`` over ``batches``, adding to ``progress``; returns (state, the epoch's metrics).

  Args:
    c: the experiment config (``batch_size`` and ``progress_bar`` are read; the bar is drawn only when stderr is a
      terminal).
    par: the data-parallel mode.
    state: the train state, placed for ``par``.
    batches: the epoch's remaining host batches (from batch ``progress.batches`` on).
    reg: the epoch's regularizer config.
    progress: the epoch so far (``Progress(epoch, first_step=...)`` for a fresh epoch); updated in place.
    total: the epoch's number of batches (for the progress bar and the last-batch flag).
    local: whether ``batches`` are this process's part of each batch only (a stream), not the global batch.
    after_step: called as ``after_step(state, progress, last_batch)`` after every step (mid-epoch checkpoints and
      stop requests: it may raise to end the epoch there).
    shown: the step metrics the progress bar shows (the task's ``progress_metrics``).
    examples: what an example is called (the task's ``examples``), naming the throughput column.

  Returns:
    (state, metrics): the new state; the step metrics' means as ``train_<name>``, ``time_train``,
    ``<examples>_per_sec``.

  Raises:
    ValueError: if the epoch has no batch (``batch_size`` larger than the training set).
    recovery.NonFiniteError: if a step's loss or updated state was non-finite (the steps' on-device flags are read
      at the end of the epoch and before a mid-epoch checkpoint).
  """
  shown_bar = bool(c.progress_bar) and sys.stderr.isatty()  # a log file gets the epoch lines, no '\r' updates
  bar = tqdm.tqdm(batches, total=total, initial=progress.batches, desc=f"epoch {progress.epoch}",
                  disable=not shown_bar, leave=False)
  start = time.perf_counter()
  for batch in bar:
    state, metrics = par.train_step(state, par.shard_batch(batch, local), reg)
    progress.add(metrics)
    if progress.batches % 20 == 0 and shown_bar:
      host = par.metrics(metrics)
      bar.set_postfix({name: f"{host[name]:.3f}" for name in shown})
    if after_step is not None:
      now = time.perf_counter()
      progress.seconds, start = progress.seconds + now - start, now
      after_step(state, progress, progress.batches == total)
  progress.seconds += time.perf_counter() - start
  if progress.batches == 0:
    raise ValueError(f"batch_size={c.batch_size} is larger than the training set")
  progress.check_finite(par)
  means = {k: v / progress.batches for k, v in par.metrics(progress.sums).items()}
  return state, {**{f"train_{k}": v for k, v in means.items()}, "time_train": progress.seconds,
                 f"{examples}_per_sec": progress.batches * c.batch_size / max(progress.seconds, 1e-9)}


def epoch_batches(inputs, rng: jax.Array, epoch: int, start: int = 0):
  """The shuffled, augmented batches of ``epoch`` from batch ``start`` on (seeded by the run's rng and the epoch).

  Args:
    inputs: the run's input (``experiments.tasks.Inputs``).
    rng: the run's PRNG key.
    epoch: the epoch.
    start: the first batch (a resume inside the epoch).

  Returns:
    The iterator of ``inputs.train_batches``.
  """
  seed = [int(x) for x in np.asarray(jax.random.key_data(jax.random.fold_in(rng, epoch)))]
  return inputs.train_batches(seed, epoch, start)


def evaluate(par: DataParallel, state, inputs, task) -> dict:
  """The test metrics of ``state`` over the whole test set.

  Args:
    par: the data-parallel mode.
    state: the train state, placed for ``par``.
    inputs: the run's input (``experiments.tasks.Inputs``); its eval batches (the last one padded and masked) are
      used.
    task: the run's ``experiments.tasks.Task``: its ``evaluate`` reads the summed eval outputs.

  Returns:
    The task's test metrics (``Task.evaluate``).
  """
  sums = None
  for batch in inputs.eval_batches():
    out = par.eval_step(state, par.shard_batch(batch, inputs.local))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  return task.evaluate(par.metrics(sums))
