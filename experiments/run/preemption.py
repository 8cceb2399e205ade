"""Stopping a run cleanly when the scheduler asks: SIGTERM, SIGINT and one extra signal (``checkpoint.stop_signal``,
SIGUSR1 by default: SLURM's ``--signal`` warning).

A signal only records the request (``StopRequest``); the training loop asks ``requested(step)`` after every step and
at every epoch end. On a request it finishes the current step, saves a checkpoint of that step synchronously (a
mid-epoch one if the epoch is not over), writes the metrics so far, releases the workdir lock and raises ``Stopped``;
the command line exits with ``EXIT_CODE``. Rerunning the same command resumes from that step.

Several processes must save the same step. Each process checks its own flag, so they agree through a collective:
every ``sync_every`` steps (and at every epoch end) all processes gather their flags and stop together if any was
signalled; a signal therefore takes at most ``sync_every`` steps to act. One process alone checks every step, with no
collective. If a process dies instead, the others fail at their next collective within the heartbeat timeout
(``jaxsvd.training.distributed``), as for any lost process.

A second signal while the stop checkpoint is written is logged and ignored: the save goes on, and Orbax's atomic
commit keeps the previous step the latest until the new one is complete (SIGKILL is the hard stop).
"""

from __future__ import annotations

import logging
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxsvd.core.validate import check_min_int

log = logging.getLogger("jaxsvd")

EXIT_CODE = 75  # os.EX_TEMPFAIL: "try again" — a stopped run resumes when the same command is run again
ALWAYS = ("SIGTERM", "SIGINT")
EXTRA_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGHUP", "SIGXCPU", "none")


class Stopped(Exception):
  """The run stopped on a signal after committing a checkpoint of its last step (``EXIT_CODE``)."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


def check_stop_signal(name: str) -> None:
  """Raises a one-line ``ValueError`` unless ``name`` is one of ``EXTRA_SIGNALS``.

  Args:
    name: the config's ``checkpoint.stop_signal``.
  """
  if name not in EXTRA_SIGNALS:
    raise ValueError(f"checkpoint.stop_signal: {name!r} is not one of {EXTRA_SIGNALS} (SIGTERM and SIGINT always stop "
                     "a run cleanly)")


class StopRequest:
  """Records SIGTERM / SIGINT / the extra signal while installed (a context manager: the previous handlers come back
  on exit); ``requested(step)`` says whether every process should stop after ``step``."""

  def __init__(self, extra_signal: str = "SIGUSR1", sync_every: int = 10):
    check_stop_signal(extra_signal)
    check_min_int("checkpoint.stop_sync_every", sync_every, 1)
    self.names = ALWAYS + (() if extra_signal == "none" else (extra_signal,))
    self.sync_every = sync_every
    self.received: str | None = None
    self._previous: dict = {}

  def __enter__(self) -> StopRequest:
    if threading.current_thread() is not threading.main_thread():
      log.warning("not in the main thread: %s will not stop this run cleanly", "/".join(self.names))
      return self
    for name in self.names:
      signum = getattr(signal, name)
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self.received is None:
      self.received = name
      log.warning("received %s: finishing the current step, then saving a checkpoint and stopping", name)
    else:
      log.warning("received %s again: the stop checkpoint is being written; the previous checkpoint stays the latest "
                  "until it is committed (SIGKILL stops at once)", name)

  def requested(self, step: int, sync: bool = False) -> bool:
    """Whether the run stops after optimizer step ``step``: the same answer on every process.

    Args:
      step: the optimizer steps done (the same on every process).
      sync: force the cross-process check (epoch ends); otherwise it runs every ``sync_every`` steps.

    Returns:
      One process: whether a signal arrived. Several: whether any process got one (checked at sync points only;
      False between them).
    """
    if jax.process_count() == 1:
      return self.received is not None
    if not sync and step % self.sync_every:
      return False
    flags = multihost_utils.process_allgather(np.int32(self.received is not None))
    if flags.any() and self.received is None:
      self.received = "a signal to another process"
    return bool(flags.any())


__all__ = ["EXIT_CODE", "EXTRA_SIGNALS", "Stopped", "check_stop_signal", "StopRequest"]
