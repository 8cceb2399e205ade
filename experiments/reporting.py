"""Run outputs: metrics CSV + TensorBoard, the end-of-run summary table, PNG plots."""

from __future__ import annotations

import csv
import os
from typing import Any, Sequence

import numpy as np

from jaxsvd.checkpoint import integrity
from jaxsvd.core.structure import iter_svd_layers


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
    summary: the summary of ``train.finish``.

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


def plot_all(workdir: str, history: list[dict], params) -> list[str]:
  """Saves accuracy.png and ranks.png (per epoch) and, if there are SVD layers, spectra.png to ``workdir``.

  Args:
    workdir: the directory to write to.
    history: the metrics rows of every epoch.
    params: host params; the spectra are their layers' sorted |s|.

  Returns:
    The paths of the saved files.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  paths = []

  def series(key):  # (epochs, values) of the rows that have ``key`` (a prune-only stage's row has no train metrics)
    rows = [h for h in history if key in h]
    return [h["epoch"] for h in rows], [h[key] for h in rows]

  def save(fig, name):
    path = os.path.join(workdir, name)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(*series("train_accuracy"), label="train")
  ax.plot(*series("test_accuracy"), marker=".", label="test")
  ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy vs epoch")
  ax.legend()
  save(fig, "accuracy.png")

  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(*series("total_rank"), marker="o")
  ax.set(xlabel="epoch", ylabel="total rank (Σ over SVD layers)", title="ranks vs epoch")
  save(fig, "ranks.png")

  layers = list(iter_svd_layers(params))
  if layers:
    fig, ax = plt.subplots(figsize=(7, 4))
    for path, node in layers:
      s = np.sort(np.abs(np.asarray(node["s"])))[::-1]
      ax.semilogy(np.arange(1, len(s) + 1), np.maximum(s, 1e-12), label=path, alpha=0.7)
    ax.set(xlabel="index", ylabel="|s| (sorted)", title="singular-value spectra per layer")
    if len(layers) <= 12:
      ax.legend(fontsize=6)
    save(fig, "spectra.png")
  return paths
