"""Byte-level text corpora for language models: any folder of text files, split by file, packed into sequences.

  corpus = load_corpus(stdlib_dir(), suffixes=(".py",), test_fraction=0.1, seed=0)
  train = pack(corpus.train, seq_len=128)          # (N, 129) int32: inputs [:, :-1], targets [:, 1:]

Tokens are the files' UTF-8 bytes (vocabulary ``VOCAB`` = 256), each file followed by ``SEPARATOR`` (the NUL byte,
which no accepted file contains). The split is by file, fixed by ``seed`` (files sorted by relative path, then
permuted), so no file's text is in two splits and the same folder gives the same split on every machine.
Files that are not text — a NUL byte, invalid UTF-8 — or empty are skipped and counted (``Corpus.skipped``), never
a crash; a folder with no usable file is a one-line error. The default corpus is the ``.py`` files of this Python's
standard library (``stdlib_dir``): every machine has one; its ``site-packages`` (third-party packages, whatever this
machine installed) are left out with ``exclude=STDLIB_EXCLUDE``.
"""

from __future__ import annotations

import dataclasses
import os
import sysconfig

import numpy as np

VOCAB = 256
SEPARATOR = 0
STDLIB_EXCLUDE = ("site-packages", "dist-packages")  # folders of the stdlib's tree that hold other packages


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A split corpus: ``train``/``test`` token arrays (uint8, files joined by ``SEPARATOR``), the files in each
  split (relative paths), and ``skipped`` {reason: count} of the files left out."""
  train: np.ndarray
  test: np.ndarray
  train_files: tuple[str, ...]
  test_files: tuple[str, ...]
  skipped: dict[str, int]

  def describe(self) -> str:
    """One line: files and bytes per split, and what was skipped."""
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
    return (f"{len(self.train_files):,} train files ({self.train.size:,} bytes), {len(self.test_files):,} test files "
            f"({self.test.size:,} bytes); skipped: {skipped}")


def stdlib_dir() -> str:
  """The folder of this Python's standard library (``sysconfig.get_paths()['stdlib']``)."""
  return sysconfig.get_paths()["stdlib"]


def text_files(root: str, suffixes: tuple[str, ...] = (".py",), exclude: tuple[str, ...] = ()) -> list[str]:
  """The files under ``root`` whose name ends with one of ``suffixes``, as sorted paths relative to ``root``.

  Args:
    root: a folder.
    suffixes: accepted file-name endings (empty: every file).
    exclude: names of folders not entered (e.g. ``STDLIB_EXCLUDE``).

  Returns:
    The relative paths, sorted.

  Raises:
    ValueError: if ``root`` is not a folder (one line naming it).
  """
  if not os.path.isdir(root):
    raise ValueError(f"text folder {root!r} does not exist or is not a folder")
  found = []
  for folder, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if d not in exclude)
    found += [os.path.relpath(os.path.join(folder, f), root) for f in files
              if not suffixes or f.endswith(tuple(suffixes))]
  return sorted(found)


def read_text(path: str) -> tuple[bytes | None, str | None]:
  """A file's bytes if it is usable text, else (None, why): 'empty', 'binary (NUL byte)', 'not UTF-8', 'unreadable'.

  Args:
    path: the file.

  Returns:
    (bytes, None) or (None, reason).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError:
    return None, "unreadable"
  if not data:
    return None, "empty"
  if bytes([SEPARATOR]) in data:
    return None, "binary (NUL byte)"
  try:
    data.decode("utf-8")
  except UnicodeDecodeError:
    return None, "not UTF-8"
  return data, None


def split_files(files: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
  """(train, test) file lists: ``files`` sorted, permuted by ``seed``, the first ⌈fraction·n⌉ (≥ 1) to test.

  Args:
    files: relative paths.
    test_fraction: in (0, 1).
    seed: the permutation's seed.

  Returns:
    Both lists, each sorted.

  Raises:
    ValueError: if ``test_fraction`` is outside (0, 1) or fewer than 2 files are given.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
  if len(files) < 2:
    raise ValueError(f"a train/test split needs at least 2 text files, got {len(files)}")
  order = np.random.default_rng(seed).permutation(len(files))
  n_test = min(len(files) - 1, max(1, int(np.ceil(test_fraction * len(files)))))
  ordered = sorted(files)
  return sorted(ordered[i] for i in order[n_test:]), sorted(ordered[i] for i in order[:n_test])


def _joined(root: str, files: list[str]) -> np.ndarray:
  parts = []
  for name in files:
    with open(os.path.join(root, name), "rb") as f:
      parts += [f.read(), bytes([SEPARATOR])]
  return np.frombuffer(b"".join(parts), np.uint8)


def load_corpus(root: str, suffixes: tuple[str, ...] = (".py",), test_fraction: float = 0.1,
                seed: int = 0, exclude: tuple[str, ...] = ()) -> Corpus:
  """The usable text files under ``root``, split by file (module doc).

  Args:
    root: a folder of text files.
    suffixes: accepted file-name endings.
    test_fraction: the share of files held out for test.
    seed: the split's seed.
    exclude: names of folders not entered (``text_files``).

  Returns:
    The ``Corpus``.

  Raises:
    ValueError: one line, if the folder is missing, holds no file with ``suffixes`` or no usable one.
  """
  names = text_files(root, suffixes, exclude)
  if not names:
    raise ValueError(f"text folder {root!r} holds no file ending with {' or '.join(suffixes) or 'anything'}")
  usable, skipped = [], {}
  for name in names:
    data, why = read_text(os.path.join(root, name))
    if why is None:
      usable.append(name)
    else:
      skipped[why] = skipped.get(why, 0) + 1
  if not usable:
    raise ValueError(f"text folder {root!r}: none of its {len(names)} files is usable text ({skipped})")
  train, test = split_files(usable, test_fraction, seed)
  return Corpus(_joined(root, train), _joined(root, test), tuple(train), tuple(test), skipped)


def pack(tokens: np.ndarray, seq_len: int) -> np.ndarray:
  """Windows of ``seq_len`` + 1 tokens starting every ``seq_len`` tokens (inputs [:, :-1], next-token targets
  [:, 1:]: every token after the first is a target exactly once); the tail that does not fill a window is dropped.

  Args:
    tokens: 1-D token array.
    seq_len: the model's context length, ≥ 1.

  Returns:
    (N, seq_len + 1) int32.

  Raises:
    ValueError: if ``seq_len`` < 1 or the tokens do not fill one window.
  """
  if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
    raise ValueError(f"seq_len must be an int >= 1, got {seq_len!r}")
  n = (len(tokens) - 1) // seq_len
  if n < 1:
    raise ValueError(f"{len(tokens)} tokens do not fill one sequence of seq_len + 1 = {seq_len + 1}")
  starts = np.arange(n) * seq_len
  return np.asarray(tokens, np.int32)[starts[:, None] + np.arange(seq_len + 1)]


__all__ = ["VOCAB", "SEPARATOR", "STDLIB_EXCLUDE", "Corpus", "stdlib_dir", "text_files", "read_text", "split_files", "load_corpus",
           "pack"]
