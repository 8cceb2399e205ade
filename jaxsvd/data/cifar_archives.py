"""The original CIFAR-10/100 archives (https://www.cs.toronto.edu/~kriz/cifar.html) read into uint8 arrays: the
binary version (extracted folder, else its .tar.gz) is preferred over the python (pickle) version; CIFAR-100 gets
its fine labels. ``jaxsvd.data.load_cifar_local`` wraps the arrays in a ``Dataset``.

The python version is a pickle, and ``pickle.load`` runs whatever a crafted file names. It is read with
``SafeUnpickler`` instead, which builds only what those files hold (dicts, lists, bytes, str, ints and NumPy arrays)
and refuses any other global with one line.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import tarfile
import zlib

import numpy as np

CIFAR = {  # name: (binary dir, binary archive, python dir, python archive, label bytes, label offset)
    "cifar10": ("cifar-10-batches-bin", "cifar-10-binary.tar.gz", "cifar-10-batches-py", "cifar-10-python.tar.gz", 1, 0),
    "cifar100": ("cifar-100-binary", "cifar-100-binary.tar.gz", "cifar-100-python", "cifar-100-python.tar.gz", 2, 1),
}


def _read_members(data_dir: str, folder: str, archive: str) -> tuple[str, dict[str, bytes]] | None:
  """(where, {basename: bytes}) of an extracted CIFAR folder or its .tar.gz archive, or None if neither exists."""
  directory = os.path.join(data_dir, folder)
  if os.path.isdir(directory):
    return directory, {n: open(os.path.join(directory, n), "rb").read() for n in os.listdir(directory)}
  tar_path = os.path.join(data_dir, archive)
  if os.path.isfile(tar_path):
    try:
      with tarfile.open(tar_path) as tar:
        return tar_path, {os.path.basename(m.name): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
      raise ValueError(f"{tar_path} cannot be read, truncated or corrupt ({type(err).__name__}: {err})") from None
  return None


def _parse_binary(blob: bytes, label_bytes: int, label_offset: int) -> tuple[np.ndarray, np.ndarray]:
  if len(blob) % (label_bytes + 3072):
    raise ValueError(f"size {len(blob)} is not a multiple of the {label_bytes + 3072}-byte record")
  records = np.frombuffer(blob, np.uint8).reshape(-1, label_bytes + 3072)
  images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return images, records[:, label_offset].astype(np.int32)


_ALLOWED_GLOBALS = {  # (module, name) -> object: all a CIFAR python batch file (Python 2 or 3, NumPy 1 or 2) names
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
    ("numpy.core.multiarray", "scalar"): np.int64(0).__reduce__()[0],  # a NumPy scalar from its dtype and bytes
    ("numpy._core.multiarray", "scalar"): np.int64(0).__reduce__()[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in a protocol-2 pickle written by Python 3
}


class SafeUnpickler(pickle.Unpickler):
  """An unpickler that builds only dicts, lists, tuples, bytes, str, numbers, NumPy arrays and NumPy scalars: any
  other global a pickle names (a function to call, a class to build) is refused before anything runs."""

  def find_class(self, module: str, name: str):
    """The allowed object for (``module``, ``name``).

    Args:
      module: the module the pickle names.
      name: the global's name in it.

    Returns:
      The object, if (module, name) is a NumPy array or scalar constructor, ``numpy.dtype`` or ``_codecs.encode``.

    Raises:
      pickle.UnpicklingError: for every other global.
    """
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch file holds only arrays, lists "
                                   "and strings") from None


def _parse_python(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
  d = SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
  labels = d.get(b"labels", d.get(b"fine_labels"))
  return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, np.int32)


def _parse_split(where: str, members: dict[str, bytes], names: list[str], parse) -> tuple[np.ndarray, np.ndarray]:
  """The concatenated (images, labels) of the CIFAR files ``names``; one-line errors for missing or bad files."""
  missing = [n for n in names if n not in members]
  if missing:
    raise FileNotFoundError(f"{where} lacks {', '.join(missing)}")
  parts = []
  for n in names:
    try:
      parts.append(parse(members[n]))
    except Exception as err:  # noqa: BLE001 -- pickle and numpy raise many types on a corrupt file
      raise ValueError(f"{where}/{n} is not a CIFAR batch file ({type(err).__name__}: {err})") from None
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar(name: str, data_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(train images, train labels, test images, test labels) of ``name`` from the archives in ``data_dir``.

  Args:
    name: 'cifar10' or 'cifar100' (a key of ``CIFAR``).
    data_dir: the directory holding the extracted folder or the .tar.gz archive (binary version tried first).

  Returns:
    (train images (50000, 32, 32, 3) uint8, train labels (50000,) int32, test images (10000, 32, 32, 3) uint8,
    test labels (10000,) int32) for the standard archives; CIFAR-100 labels are the fine labels.

  Raises:
    KeyError: if ``name`` is not a CIFAR dataset.
    FileNotFoundError: if neither version is in ``data_dir`` or a batch file is missing.
    ValueError: if an archive or a batch file is corrupt.
  """
  binary_dir, binary_tar, python_dir, python_tar, label_bytes, offset = CIFAR[name]
  ten = name == "cifar10"
  found = _read_members(data_dir, binary_dir, binary_tar)
  if found is not None:
    train_names = [f"data_batch_{i}.bin" for i in range(1, 6)] if ten else ["train.bin"]
    parse = lambda blob: _parse_binary(blob, label_bytes, offset)  # noqa: E731
    test_names = ["test_batch.bin" if ten else "test.bin"]
  else:
    found = _read_members(data_dir, python_dir, python_tar)
    train_names = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
    parse, test_names = _parse_python, ["test_batch" if ten else "test"]
  if found is None:
    raise FileNotFoundError(
        f"{name} not found in data_dir={os.path.abspath(data_dir)}: put {binary_tar} or {python_tar} (or the "
        f"extracted {binary_dir}/ or {python_dir}/) from https://www.cs.toronto.edu/~kriz/cifar.html there, or use "
        f"data_source='tfds' with internet access; fashion_mnist needs no set-up (downloaded on first use)")
  where, members = found
  return (*_parse_split(where, members, train_names, parse), *_parse_split(where, members, test_names, parse))


__all__ = ["CIFAR", "SafeUnpickler", "read_cifar"]
