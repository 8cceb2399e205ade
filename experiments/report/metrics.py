"""A run's metrics: ``metrics.csv`` and TensorBoard (exactly one row per epoch), the epoch's log line and the
end-of-run summary table. What a task measures comes in as text: ``epoch_line`` and ``summary_table`` take the task's
part of the line or table (``experiments.tasks.Task``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

from tensorboardX import SummaryWriter

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


def _header(path: str) -> list[str]:
  with open(path, newline="") as f:
    return next(csv.reader(f))


# The method columns an epoch's row may have (``loop.run_epoch``), as the log line names them: a run shows what its
# method has (ranks with SVD layers, channels with slimming, nonzero params with masks).
METHOD_COLUMNS = (("total_rank", "rank {:,}"), ("bn_channels", "BN channels {:,}"),
                  ("params_nonzero", "nonzero params {:,}"))


def epoch_line(row: dict[str, Any], task_text: str, examples: str = "examples") -> str:
  """One log line of an epoch's metrics.

  Args:
    row: the epoch's metrics row (``loop.run_epoch``'s).
    task_text: the task's metrics of the row (``Task.epoch_text``: losses, accuracies).
    examples: what an example is called (``Task.examples``): the row's ``<examples>_per_sec`` is shown.

  Returns:
    The line: the task's metrics, the method's columns the row has (``METHOD_COLUMNS``), params, MACs, times and
    examples/s.

  Raises:
    KeyError: if one of the always-present fields is missing from ``row``.
  """
  method = "".join(f"{label.format(row[key])} | " for key, label in METHOD_COLUMNS if key in row)
  return (f"epoch {row['epoch']:3d} | {task_text} | {method}params {row['params']:,} | "
          f"MACs {row['macs']:,} | time train {row['time_train']:.1f}s eval {row['time_eval']:.1f}s "
          f"prune {row['time_prune']:.2f}s | {row[f'{examples}_per_sec']:.0f} {examples}/s")


def _change(before: int, after: int, fewer: str = "") -> str:
  return f"{before:,} -> {after:,} ({before / max(after, 1):.2f}x{fewer})"


def summary_table(summary: dict[str, Any], task_rows: Sequence[tuple[str, str]] = ()) -> str:
  """The end-of-run summary as a two-column text table of before -> after values and their ratios; the rows of a
  method appear only when the summary has its fields (SVD layers and total rank, slimming's channels, the nonzero
  params of masks).

  Args:
    summary: the summary of ``outputs.finish`` (``macs_per``: what its MACs are counted per, default 'example').
    task_rows: the task's (label, value) rows, shown first (``Task.summary_rows``).

  Returns:
    The table, one row per line.
  """
  rows = [*task_rows, ("params (all layers)", _change(summary["params_before"], summary["params_after"]))]
  if "svd_params_before" in summary:
    rows.append(("params (SVD layers)", _change(summary["svd_params_before"], summary["svd_params_after"])))
  if "params_nonzero" in summary:
    rows.append(("nonzero params (masks)", _change(summary["params_total"], summary["params_nonzero"])))
  rows.append((f"MACs / {summary.get('macs_per', 'example')}", _change(summary["macs_before"], summary["macs_after"], " fewer")))
  if "rank_before" in summary:
    rows.append(("total rank", f"{summary['rank_before']} -> {summary['rank_after']}"))
  if "bn_channels_before" in summary:
    rows.append(("BN channels (slimming)", f"{summary['bn_channels_before']} -> {summary['bn_channels_after']}"))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)} | {v}" for k, v in rows)
