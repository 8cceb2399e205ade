"""Checks of what a run needs besides its config, done before anything is compiled: the workdir is writable (by
writing to it) and the batch sizes split over the devices. The data's own checks are its task's
(``experiments.tasks``: ``Task.validate`` and ``Task.inputs``).
"""

from __future__ import annotations

import os


def check_workdir(workdir: str) -> None:
  """Proves ``workdir`` writable by creating it if missing and writing and removing a probe file; a directory this
  check created is removed again (the run creates it when it starts, so a run that fails first leaves nothing).

  Args:
    workdir: the run's directory.

  Returns:
    None.

  Raises:
    ValueError: one line naming ``--workdir`` if it is empty, a file, under a file, or cannot be created or
      written.
  """
  if not workdir:
    raise ValueError("--workdir is empty")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, not a directory")
  created = _missing_ancestors(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as err:  # a parent is a file, or read-only
    raise ValueError(f"--workdir={workdir} cannot be created ({err.strerror or err})") from None
  probe = os.path.join(workdir, f".write-probe-{os.getpid()}")
  try:
    with open(probe, "w") as f:
      f.write("probe")
    os.remove(probe)
  except OSError as err:
    raise ValueError(f"--workdir={workdir} is not writable ({err.strerror or err})") from None
  finally:
    for directory in created:  # deepest first; only the empty directories this check made
      try:
        os.rmdir(directory)
      except OSError:
        break


def _missing_ancestors(path: str) -> list[str]:
  """``path`` and its ancestors that do not exist yet, deepest first."""
  missing, path = [], os.path.abspath(path)
  while not os.path.exists(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return missing


def check_devices(c, num_devices: int) -> None:
  """``batch_size`` and ``eval_batch_size`` split evenly over the data-parallel devices.

  Args:
    c: the experiment config.
    num_devices: the devices the batches are sharded over.

  Returns:
    None.

  Raises:
    ValueError: one line naming the batch-size field that is not a multiple of ``num_devices``.
  """
  for field in ("batch_size", "eval_batch_size"):
    if c[field] % num_devices:
      raise ValueError(f"{field}={c[field]} is not divisible by the {num_devices} devices of parallel={c.parallel!r}; "
                       f"choose a multiple of {num_devices}")
