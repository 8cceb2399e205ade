"""Checks of what a run needs besides its config, done before anything is compiled: the workdir is writable (by
writing to it) and the data exists, is consistent and fits the config (subset sizes, batch size).

``train_subset`` / ``test_subset``: None or -1 use the whole split; N ≥ 1 the first N examples (at most the split's
size); 0 and other negatives are errors.
"""

from __future__ import annotations

import os

from jaxsvd import data
from jaxsvd.core.validate import check_min_int

ALL = -1  # the subset sentinel: the whole split


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


def subset_size(field: str, value: int | None) -> int | None:
  """The number of examples ``value`` asks for: None for the whole split (None or ``ALL``).

  Args:
    field: the config field (``train_subset`` / ``test_subset``), put in errors.
    value: its value.

  Returns:
    None or an int ≥ 1.

  Raises:
    ValueError: unless ``value`` is None, -1 or an int ≥ 1.
  """
  if value is None or (value == ALL and not isinstance(value, bool)):
    return None
  try:
    check_min_int(field, value, 1)
  except ValueError:
    raise ValueError(f"{field} must be an int >= 1, or -1 / None for the whole split, got {value!r}") from None
  return value


def check_fits(c, ds: data.Dataset) -> None:
  """Subset sizes and ``batch_size`` against the loaded splits.

  Args:
    c: the experiment config (``train_subset``, ``test_subset``, ``batch_size``, ``data_dir``).
    ds: the full dataset.

  Returns:
    None.

  Raises:
    ValueError: one line naming the field if a subset is larger than its split or ``batch_size`` larger than the
      training examples used.
  """
  where = f"data_dir={c.data_dir}" if c.data_dir else ds.name
  train = subset_size("train_subset", c.train_subset)
  test = subset_size("test_subset", c.test_subset)
  for field, size, split in (("train_subset", train, ds.train_images), ("test_subset", test, ds.test_images)):
    if size is not None and size > len(split):
      raise ValueError(f"{field}={size} is more than the {len(split)} examples of {where}")
  used = len(ds.train_images) if train is None else train
  if c.batch_size > used:
    raise ValueError(f"batch_size={c.batch_size} is larger than the {used} training examples used "
                     f"({'train_subset' if train else where})")


def load_data(c) -> data.Dataset:
  """The config's dataset, checked (``data.load_dataset``, ``check_fits``) and cut to its subsets.

  Args:
    c: the experiment config.

  Returns:
    The ``data.Dataset`` the run trains and evaluates on.

  Raises:
    ValueError, FileNotFoundError: one line naming the field or file at fault.
  """
  ds = data.load_dataset(c.dataset, c.data_dir, c.data_source)
  check_fits(c, ds)
  return ds.subset(subset_size("train_subset", c.train_subset), subset_size("test_subset", c.test_subset))


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
