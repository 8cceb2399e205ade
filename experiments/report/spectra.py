"""The spectra a rank prune cut, one ``.npz`` file per pruning event in the run's workdir: written by the rank-pruning
event (``experiments.run.methods.rank``), read by the spectra figure (``figures.spectra_figure``).
"""

from __future__ import annotations

import os

import numpy as np

SPECTRA_FILE = "spectra_epoch{epoch}_{kind}.npz"  # a rank-pruning event's |s| before it pruned (RankPrune)


def spectra_path(workdir: str, epoch: int, kind: str) -> str:
  """Where the rank-pruning event ``kind`` ('online' | 'final') after ``epoch`` records the spectra it pruned.

  Args:
    workdir: the run's directory.
    epoch: the epoch the event fired after.
    kind: the event entry's 'kind'.

  Returns:
    ``workdir/spectra_epoch{epoch}_{kind}.npz``.
  """
  return os.path.join(workdir, SPECTRA_FILE.format(epoch=epoch, kind=kind))


def save_spectra(path: str, spectra: dict[str, np.ndarray], kept: dict[str, int], info: str) -> None:
  """Writes the singular values a rank prune saw and how many it kept, atomically (a redone epoch overwrites).

  Args:
    path: the ``.npz`` file (``spectra_path``).
    spectra: {layer path: |s| sorted descending (last axis; a stacked layer has leading axes)}.
    kept: {layer path: the number of directions kept}.
    info: one line describing the prune (event, epoch, strategy), shown in the plot's title.

  Returns:
    None.
  """
  names = sorted(spectra)
  arrays = {f"s{i}": np.asarray(spectra[name], np.float32) for i, name in enumerate(names)}
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez(f, names=np.array(names, dtype=str), kept=np.array([kept[n] for n in names], np.int64),
             info=np.array(info), **arrays)
  os.replace(tmp, path)


def load_spectra(path: str) -> tuple[str, dict[str, tuple[np.ndarray, int]]]:
  """Reads a file of ``save_spectra``.

  Args:
    path: the ``.npz`` file.

  Returns:
    (info, {layer path: (|s| sorted descending, kept count)}), layers in sorted order.
  """
  with np.load(path) as f:
    names = [str(n) for n in f["names"]]
    return str(f["info"]), {n: (f[f"s{i}"], int(f["kept"][i])) for i, n in enumerate(names)}


__all__ = ["SPECTRA_FILE", "spectra_path", "save_spectra", "load_spectra"]
