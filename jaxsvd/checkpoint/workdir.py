"""One process per run directory: an exclusive ``fcntl.flock`` on ``<workdir>/run.lock``.

Why ``flock`` and not an ``O_EXCL``-created file: the kernel drops a flock when its holder exits in any way
(SIGKILL and OOM kill included), so a lock can never be left stale and there is no window in which two
processes both judge an old lock stale and both take it; an ``O_EXCL`` file outlives a killed holder and needs
pid probing, which cannot tell a dead process on another host from a live one. The file's content (pid, host,
start time) is only for messages: a second process names the holder in its one-line error, and a process that
finds content left by a holder that no longer holds the lock (killed) logs that it takes over.
Locks are re-entrant within a process (``pruning_from_scratch`` holds it around its search and ``train.run``).
On a filesystem without lock support the run goes on unlocked, with a warning.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket

LOCK_FILE = "run.lock"
log = logging.getLogger("jaxsvd")
_held: dict[str, list] = {}  # absolute lock path -> [fd or None, depth]


class WorkdirLockedError(ValueError):
  """Another live process holds the run directory."""


def _holder(fd: int) -> dict:
  try:
    return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
  except (OSError, ValueError):
    return {}


def _describe(holder: dict) -> str:
  if not holder:
    return "another process (no holder recorded)"
  return f"pid {holder.get('pid')} on host {holder.get('host')} (started {holder.get('started')})"


def _acquire(path: str) -> int | None:
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as err:
    holder = _holder(fd)
    os.close(fd)
    if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
      raise WorkdirLockedError(f"workdir {os.path.dirname(path)} is in use by {_describe(holder)}; "
                               f"wait for that run to end or stop it (lock: {path})") from None
    log.warning("cannot lock %s (%s); running without a workdir lock", path, os.strerror(err.errno))
    return None
  previous = _holder(fd)
  if previous:
    log.info("workdir lock %s: taking over from %s, which no longer holds it (killed or crashed)",
             path, _describe(previous))
  me = {"pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(me).encode(), 0)
  os.fsync(fd)
  return fd


def _release(fd: int | None) -> None:
  if fd is None:
    return
  os.ftruncate(fd, 0)  # a clean exit leaves an empty file: nothing to take over
  fcntl.flock(fd, fcntl.LOCK_UN)
  os.close(fd)


@contextlib.contextmanager
def lock(workdir: str):
  """Holds ``workdir``'s lock for the ``with`` block (creating ``workdir`` if missing).

  Args:
    workdir: the run directory.

  Yields:
    The lock file's path.

  Raises:
    WorkdirLockedError: one line naming the holder (pid, host, start time) if another process holds it.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.abspath(os.path.join(workdir, LOCK_FILE))
  if path in _held:
    _held[path][1] += 1
  else:
    _held[path] = [_acquire(path), 1]
  try:
    yield path
  finally:
    _held[path][1] -= 1
    if _held[path][1] == 0:
      _release(_held.pop(path)[0])


__all__ = ["LOCK_FILE", "WorkdirLockedError", "lock"]
