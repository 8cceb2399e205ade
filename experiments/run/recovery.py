"""How a run starts from what its workdir holds, and how it stops when training or saving fails.

  open_checkpoints   the workdir lock, then the checkpoint manager (which deletes the unfinished saves it finds)
  start          the latest checkpoint step (verified by its checksums as it is read); with
                 ``checkpoint.restore_fallback`` a damaged step is moved to ``corrupt_checkpoints/`` and the
                 previous step is tried; no step: a fresh run.
  nonfinite      the one-line error for a NaN/Inf step: names the last good checkpoint, or says there is none.
Side outputs are reconciled by ``report.metrics.MetricsWriter`` from the restored history (exactly-once rows).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxsvd import checkpoint
from jaxsvd.checkpoint import workdir
from jaxsvd.training import distributed

log = logging.getLogger("jaxsvd")


class NonFiniteError(FloatingPointError):
  """A train step produced a NaN/Inf loss or a non-finite param or model-state value."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


def check_finite(flags: list[float], first_step: int, mean_loss: float) -> None:
  """Raises ``NonFiniteError`` naming the first step whose 'finite' flag is 0.

  Args:
    flags: the epoch's per-step 'finite' metrics on the host (``DataParallel.metrics``: read once per epoch).
    first_step: the optimizer step count before the epoch's first step.
    mean_loss: the epoch's mean training loss (for the message).
  """
  host = np.asarray(flags)
  if not host.all():
    step = first_step + int(np.argmin(host)) + 1
    raise NonFiniteError(f"training became non-finite at step {step} (epoch mean loss {mean_loss})", step)


def open_checkpoints(path: str, cfg, best_metric: str, best_mode: str = "max"):
  """(checkpoint manager for ``path/checkpoints``, the held workdir lock as an ``ExitStack``).

  Args:
    path: the workdir.
    cfg: the config's ``checkpoint`` section (``max_to_keep``, ``async_save``).
    best_metric: the metric the best checkpoint is kept by.
    best_mode: 'max' (the highest is best) or 'min'.

  Raises:
    workdir.WorkdirLockedError: one line naming the process that holds ``path`` (on every process of a multi-process
      job: process 0 tries the lock and tells the others).
  """
  lock, refused = contextlib.ExitStack(), None
  if distributed.is_primary():  # a multi-process run writes one workdir from every process; process 0 locks it
    try:
      lock.enter_context(workdir.lock(path))
    except workdir.WorkdirLockedError as err:
      refused = err
  if jax.process_count() > 1 and not multihost_utils.process_allgather(np.int32(refused is None)).all():
    raise refused or workdir.WorkdirLockedError(f"workdir {path} is in use by another run (process 0 could not "
                                                "lock it; its error names the holder)")
  if refused is not None:
    raise refused
  try:
    mngr = checkpoint.manager(os.path.join(path, "checkpoints"), cfg.max_to_keep, best_metric, best_mode,
                              async_save=cfg.async_save)
  except BaseException:
    lock.close()
    raise
  return mngr, lock


def close(mngr, lock: contextlib.ExitStack, writer=None) -> None:
  """Waits for the save in flight (a failure raised as one line), closes ``mngr`` and ``writer``, releases ``lock``."""
  with lock, contextlib.ExitStack() as stack:
    if writer is not None:
      stack.callback(writer.close)
    stack.callback(mngr.close)
    checkpoint.wait(mngr)


def quarantine(directory: str, step: int) -> str:
  """Moves step ``step`` of a manager directory to ``<directory>/../corrupt_checkpoints/<step>`` (kept, not deleted).

  Args:
    directory: the manager directory.
    step: the damaged step.

  Returns:
    The step's new path.
  """
  target = os.path.join(os.path.dirname(directory), "corrupt_checkpoints", str(step))
  if os.path.exists(target):
    target += f"-{time.strftime('%Y%m%d-%H%M%S')}"
  os.makedirs(os.path.dirname(target), exist_ok=True)
  shutil.move(os.path.join(directory, str(step)), target)
  return target


def start(s, init_run, resume_run):
  """The ``Run`` to continue: resumed from the latest readable step, else fresh.

  Args:
    s: the run's ``loop.Setup`` (``s.c.checkpoint.restore_fallback`` is read; ``s.mngr`` is reloaded after a
      fallback).
    init_run: ``Setup → Run`` (a fresh run).
    resume_run: ``(Setup, step) → Run``; raises ``CheckpointError`` for a damaged step.

  Returns:
    The ``Run``.

  Raises:
    CheckpointError: one line, if the latest step is damaged and ``restore_fallback`` is off (the message says how
      to turn it on), or if every step is damaged.
  """
  directory = os.fspath(s.mngr.directory)
  available = checkpoint.steps(directory) if os.path.isdir(directory) else []
  if not available:
    return init_run(s)
  fallback = s.c.checkpoint.get("restore_fallback", False)
  for step in reversed(available):
    try:
      return resume_run(s, step)
    except checkpoint.CheckpointError as err:
      if not fallback:
        hint = " (--config.checkpoint.restore_fallback=True resumes from the previous step)"
        raise checkpoint.CheckpointError(f"{err}{hint if len(available) > 1 else ''}") from None
      moved = quarantine(directory, step) if distributed.is_primary() else "corrupt_checkpoints/"
      if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jaxsvd_quarantine_{step}")
      log.warning("checkpoint step %d is unusable (%s); moved it to %s and falling back", step, err, moved)
      s.mngr.reload()
  raise checkpoint.CheckpointError(f"no usable checkpoint under {directory}: every step was damaged (moved to "
                                   f"{os.path.join(os.path.dirname(directory), 'corrupt_checkpoints')})")


def last_good(mngr) -> str:
  """'step N (epoch E) in DIR' for the latest complete checkpoint on disk (after any save in flight), or a sentence
  saying that there is none yet."""
  try:
    checkpoint.wait(mngr)
  except checkpoint.CheckpointSaveError as err:
    log.warning("%s", err)
  directory = os.fspath(mngr.directory)
  done = checkpoint.steps(directory) if os.path.isdir(directory) else []
  if not done:
    return "no checkpoint has been saved yet (the run stopped before its first save)"
  try:
    epoch = checkpoint.read_meta(directory, done[-1]).get("epoch")
  except checkpoint.CheckpointError:
    epoch = "?"
  return f"the last good checkpoint is step {done[-1]} (epoch {epoch}) in {directory}"


def nonfinite(mngr, err: NonFiniteError, epoch: int) -> FloatingPointError:
  """The one-line error for a non-finite step: what happened, that nothing after it was saved, the last good step."""
  return FloatingPointError(f"{err} in epoch {epoch}; stopped without saving it: {last_good(mngr)}")
