"""Checkpoint integrity: per-file checksums committed with each step, finiteness, and I/O errors as one line.

A step's ``checksums.json`` lists every file under its item directories (``model/``, ``train/``, ``meta/``, ...)
with its size and CRC-32 (zlib: ~2.5× the speed of SHA-256 here; it detects every error burst of up to 32 bits,
so any flipped byte, and other accidental corruption with probability 1 − 2⁻³²; it is not a defence against
deliberate tampering). It is written by ``ChecksummedTemporaryPath.finalize`` into the step's temporary
directory *before* Orbax's atomic rename, so a committed step always has its checksums (also with async saves),
and a step is never visible without them. Reading an item verifies that item's files first: a missing,
truncated or changed file is a one-line ``CheckpointError`` naming the step and the file. Steps written before
checksums existed (format 1, early format 2) have no ``checksums.json`` and are read unverified.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxsvd.core.tree import leaves_by_path

CHECKSUMS_FILE = "checksums.json"
_CHUNK = 1 << 22
# errnos that mean "the storage failed", not "the caller passed a bad path".
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupt, or does not match the model it describes."""


class CheckpointSaveError(CheckpointError):
  """Writing a checkpoint failed (disk full, I/O error); the previous step stays the latest."""


def first_line(err: BaseException, limit: int = 300) -> str:
  """The first non-empty line of ``str(err)`` (TensorStore errors run to dozens of lines), at most ``limit`` chars.

  Args:
    err: the exception.
    limit: the most characters returned; a longer line is cut to ``limit - 3`` characters plus '...'.

  Returns:
    The stripped first non-empty line, or the exception's class name if its text is empty.
  """
  lines = [line.strip() for line in str(err).splitlines() if line.strip()]
  text = lines[0] if lines else type(err).__name__
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _crc32(path: str) -> int:
  crc = 0
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
  return crc


def _item_files(step_dir: str) -> list[str]:
  """Paths (relative to ``step_dir``, '/'-separated) of every file inside the step's item directories."""
  files = []
  for item in sorted(os.listdir(step_dir)):
    item_dir = os.path.join(step_dir, item)
    if not os.path.isdir(item_dir):
      continue  # step-level files (_CHECKPOINT_METADATA, commit_success.txt) change during Orbax's finalize
    for root, _, names in os.walk(item_dir):
      files += [os.path.relpath(os.path.join(root, n), step_dir).replace(os.sep, "/") for n in names]
  return sorted(files)


def write_checksums(step_dir: str) -> dict:
  """Writes ``step_dir/checksums.json``: {'algorithm': 'crc32', 'files': {relative path: [size, crc32]}}.

  Args:
    step_dir: a (temporary) step directory whose items are complete.

  Returns:
    The dict written.
  """
  files = {rel: [os.path.getsize(os.path.join(step_dir, rel)), _crc32(os.path.join(step_dir, rel))]
           for rel in _item_files(step_dir)}
  record = {"algorithm": "crc32", "files": files}
  tmp = os.path.join(step_dir, CHECKSUMS_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(record, f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, os.path.join(step_dir, CHECKSUMS_FILE))
  return record


def read_checksums(step_dir: str) -> dict | None:
  """The step's checksum record, or None for a step written without one (format 1, early format 2).

  Args:
    step_dir: the step's directory (``<manager dir>/<step>``).

  Returns:
    The record's ``files`` mapping {relative path: [size, crc32]}, or None if ``step_dir`` has no
    ``checksums.json``.

  Raises:
    CheckpointError: if ``checksums.json`` exists but cannot be read, is not JSON, or has no ``files`` entry.
  """
  path = os.path.join(step_dir, CHECKSUMS_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
    return record["files"]
  except (OSError, ValueError, KeyError, TypeError) as err:
    raise CheckpointError(f"checkpoint step {os.path.basename(step_dir)}: {path} is unreadable "
                          f"({first_line(err)})") from None


def verify_item(step_dir: str, item: str) -> None:
  """Checks every file of ``item`` listed in the step's checksums (none listed: nothing to check).

  Args:
    step_dir: the step's directory (``<manager dir>/<step>``).
    item: the item's directory name ('model', 'train', 'meta', 'architecture').

  Raises:
    CheckpointError: one line naming the step and the first file that is missing, truncated, longer than
      written, or whose CRC-32 differs.
  """
  files = read_checksums(step_dir)
  if files is None:
    return
  step = os.path.basename(step_dir)
  for rel, (size, crc) in files.items():
    if rel.split("/")[0] != item:
      continue
    path = os.path.join(step_dir, *rel.split("/"))
    if not os.path.isfile(path):
      raise CheckpointError(f"checkpoint step {step} is damaged: file {rel} is missing (in {step_dir})")
    actual = os.path.getsize(path)
    if actual != size:
      kind = "truncated" if actual < size else "longer than written"
      raise CheckpointError(f"checkpoint step {step} is damaged: file {rel} is {kind} ({actual} of {size} bytes; "
                            f"in {step_dir})")
    if _crc32(path) != crc:
      raise CheckpointError(f"checkpoint step {step} is damaged: file {rel} fails its CRC-32 checksum "
                            f"(in {step_dir})")


class ChecksummedTemporaryPath(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Orbax's atomic-rename commit, with ``checksums.json`` written into a step's temporary directory first.

  Orbax uses the class for the step directory and for each item directory inside it; only the step directory
  (a digit-named final path) gets checksums, after its items are finalized and before the rename that commits it.
  """

  async def finalize(self, *args, **kwargs):
    if self.get_final().name.isdigit():
      await asyncio.to_thread(write_checksums, os.fspath(self.get()))
    await super().finalize(*args, **kwargs)


def free_bytes(path: str) -> int | None:
  """Free bytes on the filesystem holding ``path`` (or its nearest existing parent); None if unknown.

  Args:
    path: a file or directory path; it need not exist yet.

  Returns:
    ``shutil.disk_usage(...).free`` of the nearest existing path, or None if that raises an ``OSError``.
  """
  path = os.path.abspath(path)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def storage_error(err: BaseException) -> OSError | None:
  """The OSError with a storage errno (ENOSPC, EDQUOT, EIO, EROFS, EFBIG) in ``err``'s cause chain, if any.

  TensorStore reports a full disk as a ValueError whose text holds the errno's message, so the text counts too.

  Args:
    err: the exception to inspect; its ``__cause__`` / ``__context__`` chain is followed (each exception once).

  Returns:
    The first such ``OSError`` in the chain, or a new ``OSError(errno, strerror)`` for an exception whose text holds
    a storage errno's message; None if there is neither.
  """
  seen = set()
  while err is not None and id(err) not in seen:
    seen.add(id(err))
    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
      return err
    for code in _STORAGE_ERRNOS:
      if os.strerror(code) in str(err):
        return OSError(code, os.strerror(code))
    err = err.__cause__ or err.__context__
  return None


def save_failure(err: BaseException, path: str, what: str) -> CheckpointSaveError:
  """A one-line error for a failed write: what, where, the OS's reason and the free space there.

  Args:
    err: the exception raised by the write.
    path: the file or directory being written.
    what: what was being written (e.g. 'checkpoint step 12').

  Returns:
    The ``CheckpointSaveError`` to raise.
  """
  cause = storage_error(err)
  reason = cause.strerror if cause is not None and cause.strerror else first_line(err)
  free = free_bytes(path)
  space = f"{free:,} bytes free there" if free is not None else "free space unknown"
  return CheckpointSaveError(f"writing {what} to {path} failed: {reason} ({space}); stopped")


def nonfinite_leaves(tree) -> list[str]:
  """Paths of the floating-point leaves of ``tree`` that hold a NaN or ±Inf.

  Device arrays are checked where they live (one jitted function reducing each leaf to a replicated bool), so a
  sharded leaf is never gathered to one host; host arrays are checked with NumPy.

  Args:
    tree: any pytree of arrays; non-inexact leaves are skipped.

  Returns:
    The '/'-joined paths of the offending leaves, in flattening order (empty if every leaf is finite).
  """
  leaves = {path: leaf for path, leaf in leaves_by_path(tree).items()
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)}
  on_device = {path: leaf for path, leaf in leaves.items() if isinstance(leaf, jax.Array)}
  finite = {path: bool(ok) for path, ok in _all_finite(on_device).items()}
  finite.update({path: bool(np.isfinite(leaf).all()) for path, leaf in leaves.items() if path not in on_device})
  return [path for path in leaves if not finite[path]]


@jax.jit
def _all_finite(leaves: dict) -> dict:
  return {path: jnp.isfinite(leaf).all() for path, leaf in leaves.items()}


__all__ = ["CHECKSUMS_FILE", "CheckpointError", "CheckpointSaveError", "first_line", "write_checksums",
           "read_checksums", "verify_item", "ChecksummedTemporaryPath", "free_bytes", "storage_error",
           "save_failure", "nonfinite_leaves"]
