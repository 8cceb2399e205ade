"""Run outputs: metrics CSV + TensorBoard, the end-of-run summary table, PNG plots."""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np

from jaxsvd.checkpoint import integrity


class MetricsWriter:
  """Appends one row per epoch to ``metrics.csv`` and the same scalars to TensorBoard, exactly once per epoch.

  Opening it reconciles both with ``history``, the rows of the checkpoint the run continues from: metrics.csv is
  rewritten (atomically) to exactly those rows, dropping rows a killed process wrote for epochs it never
  committed (or a partial last line), and TensorBoard's writer starts with ``purge_step`` = the next epoch, so
  TensorBoard discards the earlier attempt's events from that epoch on.
  """

  def __init__(self, workdir: str, tensorboard: bool = True, history: Sequence[dict[str, Any]] = ()):
    self.path = os.path.join(workdir, "metrics.csv")
    self._rewrite(list(history))
    self.tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter
      next_epoch = history[-1]["epoch"] + 1 if history else 1
      self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=next_epoch)

  def _rewrite(self, rows: list[dict[str, Any]]) -> None:
    if not rows:
      if os.path.exists(self.path):
        os.remove(self.path)
      return
    tmp = self.path + ".tmp"
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=list(rows[0]), restval="", extrasaction="ignore")
      writer.writeheader()
      writer.writerows(rows)
    os.replace(tmp, self.path)

  def write(self, row: dict[str, Any]) -> None:
    """Columns are fixed by the first row (also across resumes); missing values are left blank.

    Args:
      row: {column: value} of one epoch, with an 'epoch' key (the TensorBoard step); only int and float values
        go to TensorBoard.

    Returns:
      None.

    Raises:
      jaxsvd.checkpoint.integrity.CheckpointSaveError: one line (path, reason, free space) if the row cannot be
        written (disk full, I/O error); the file keeps its earlier rows (a partial line is dropped on resume).
    """
    new = not os.path.exists(self.path)
    try:
      fields = list(row) if new else _header(self.path)
      with open(self.path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        if new:
          writer.writeheader()
        writer.writerow(row)
    except OSError as err:
      raise integrity.save_failure(err, self.path, f"the metrics row of epoch {row.get('epoch')}") from None
    if self.tb is not None:
      for key, value in row.items():
        if key != "epoch" and isinstance(value, (int, float)):
          self.tb.add_scalar(key, value, row["epoch"])
      self.tb.flush()

  def close(self) -> None:
    """Closes the TensorBoard writer, if any."""
    if self.tb is not None:
      self.tb.close()


def config_changes(c, defaults, limit: int = 16) -> str:
  """The fields of config ``c`` whose values differ from ``defaults`` (or that ``defaults`` lacks), as one line.

  Args:
    c: the run's config.
    defaults: the default config (``experiments/configs/default.py``).
    limit: at most this many fields are named.

  Returns:
    'field=value, ...' ('none' when they agree).
  """
  ours, theirs = _flat(c.to_dict()), _flat(defaults.to_dict())
  changed = [f"{k}={v!r}" for k, v in ours.items() if k not in theirs or theirs[k] != v]
  more = f", ... ({len(changed) - limit} more)" if len(changed) > limit else ""
  return ", ".join(changed[:limit]) + more if changed else "none"


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _header(path: str) -> list[str]:
  with open(path, newline="") as f:
    return next(csv.reader(f))


def epoch_line(row: dict[str, Any]) -> str:
  """One log line of an epoch's metrics.

  Args:
    row: the epoch's metrics row (``train.run_epoch``'s).

  Returns:
    The line: losses, accuracies, total rank, params, MACs, times and images/s.

  Raises:
    KeyError: if one of those fields is missing from ``row``.
  """
  return (f"epoch {row['epoch']:3d} | train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
          f"test acc {row['test_accuracy']:.4f} | rank {row['total_rank']} | params {row['params']:,} | "
          f"MACs {row['macs']:,} | time train {row['time_train']:.1f}s eval {row['time_eval']:.1f}s "
          f"prune {row['time_prune']:.2f}s | {row['images_per_sec']:.0f} img/s")


def summary_table(summary: dict[str, Any]) -> str:
  """The end-of-run summary as a two-column text table of before -> after values and their ratios.

  Args:
    summary: the summary of ``outputs.finish``.

  Returns:
    The table, one row per line.
  """
  rows = [("test accuracy", f"{summary['test_accuracy']:.4f}"),
          ("params (all layers)", f"{summary['params_before']:,} -> {summary['params_after']:,} "
                                   f"({summary['params_before'] / max(summary['params_after'], 1):.2f}x)"),
          ("params (SVD layers)", f"{summary['svd_params_before']:,} -> {summary['svd_params_after']:,} "
                                   f"({summary['svd_params_before'] / max(summary['svd_params_after'], 1):.2f}x)"),
          ("MACs / example", f"{summary['macs_before']:,} -> {summary['macs_after']:,} "
                             f"({summary['flops_speedup']:.2f}x fewer)"),
          ("total rank", f"{summary['rank_before']} -> {summary['rank_after']}")]
  if "bn_channels_before" in summary:
    rows.append(("BN channels (slimming)", f"{summary['bn_channels_before']} -> {summary['bn_channels_after']}"))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)} | {v}" for k, v in rows)


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


def plot_all(workdir: str, history: list[dict], params, events: Sequence[dict] = (), summary: dict | None = None,
             architecture=None) -> list[str]:
  """Saves the run's figures as PNGs in ``workdir`` (``experiments.plots.plot_all``; matplotlib loads only here).

  Args:
    workdir: the directory to write to (and to read the pruning events' ``spectra_epoch*.npz`` from).
    history: the metrics rows of every epoch.
    params: host params (the final spectra).
    events: the run's pruning-event entries ({'epoch', 'kind', ...}).
    summary: the end-of-run summary (its ``*_before`` values are the run's start), or None.
    architecture: the final architecture record (its ``original_ranks`` are the per-layer ranks at the start), or
      None.

  Returns:
    The paths of the saved files.
  """
  from experiments.report import figures as plots

  return plots.plot_all(workdir, history, params, events, summary, architecture)
