"""The run's figures (``run.outputs`` calls ``plot_all``): loss terms, accuracy, compression, and (from
``layer_figures``) per-layer ranks and the spectra a rank prune cut. This module imports matplotlib: import it only
to plot.

Every per-epoch figure draws each pruning event as a vertical line at the epoch it fired after (one style per kind)
and shades the fine-tune phase (the rows with ``finetune`` = 1, from the end of the last training epoch). A row's
accuracy and losses are measured before that epoch's events, its total rank, params and MACs after them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, MaxNLocator

from experiments.report.layer_figures import layer_ranks_figure, spectra_figure, spectra_record
from experiments.report.style import DPI, STYLE, legend_below

EVENT_STYLE = {"online": {"color": "0.45", "linestyle": ":", "linewidth": 1.1},
               "final": {"color": "tab:red", "linestyle": "--", "linewidth": 1.3},
               "slimming": {"color": "tab:purple", "linestyle": "-.", "linewidth": 1.3}}
EVENT_NAMES = {"online": "online prune", "final": "final prune", "slimming": "slimming"}
FINETUNE = {"color": "tab:green", "alpha": 0.12}
REG_TERMS = (("train_orth", "orthogonality: Σ (‖UᵀU−I‖² + ‖VᵀV−I‖²)/r²"), ("train_sparsity", "sparsity: Σ R(s)"),
             ("train_l2", "l2: ½‖θ‖²"))


def plot_all(workdir: str, history: Sequence[dict], params, events: Sequence[dict] = (),
             summary: Mapping | None = None, architecture=None) -> list[str]:
  """Writes loss.png, accuracy.png, compression.png and, with SVD layers, layer_ranks.png and spectra.png.

  Args:
    workdir: the directory to write to; the rank prunes' spectra files (``spectra.spectra_path``) are read here.
    history: the metrics rows of every epoch (a prune-only stage's rows have no train metrics).
    params: host params: the spectra at the end of the run.
    events: the run's pruning-event entries ({'epoch', 'kind', 'ranks', ...}).
    summary: the end-of-run summary; its ``rank_before``, ``macs_before``, ``params_before`` are the start (epoch 0).
    architecture: the final architecture record; its ``original_ranks`` are the per-layer ranks at the start.

  Returns:
    The paths of the saved PNGs (150 dpi).
  """
  original = getattr(architecture, "original_ranks", None)
  paths = []
  with matplotlib.rc_context(STYLE):
    figures = {"loss.png": loss_figure(history, events), "accuracy.png": accuracy_figure(history, events),
               "compression.png": compression_figure(history, events, summary),
               "layer_ranks.png": layer_ranks_figure(history, events, original),
               "spectra.png": spectra_figure(spectra_record(workdir, events), params)}
    for name, fig in figures.items():
      if fig is not None:
        paths.append(os.path.join(workdir, name))
        fig.savefig(paths[-1], dpi=DPI)
  return paths


def series(history: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, values) of the rows that have a numeric ``key``.

  Args:
    history: the metrics rows.
    key: the column.

  Returns:
    Two float arrays of equal length.
  """
  rows = [h for h in history if isinstance(h.get(key), (int, float, np.number))]
  return np.array([h["epoch"] for h in rows], float), np.array([h[key] for h in rows], float)


def mark_phases(ax, history: Sequence[dict], events: Sequence[dict]) -> None:
  """Shades the fine-tune phase (gid 'finetune') and draws a vertical line per event (gid 'event:<kind>').

  Args:
    ax: the axes.
    history: the metrics rows (their ``finetune`` flags).
    events: the pruning-event entries; the legend names each kind once, with its epoch or count.

  Returns:
    None.
  """
  finetune = [h["epoch"] for h in history if h.get("finetune")]
  if finetune:
    ax.axvspan(min(finetune) - 1, max(finetune), label="fine-tune", gid="finetune", linewidth=0, **FINETUNE)
  kinds = [e.get("kind", "event") for e in events]
  for kind in dict.fromkeys(kinds):
    epochs = [e["epoch"] for e in events if e.get("kind", "event") == kind]
    name = EVENT_NAMES.get(kind, kind)
    label = f"{name} (after epoch {epochs[0]})" if len(epochs) == 1 else f"{name} (×{len(epochs)})"
    for i, epoch in enumerate(epochs):
      ax.axvline(epoch, label=label if i == 0 else None, gid=f"event:{kind}",
                 **EVENT_STYLE.get(kind, {"color": "0.3", "linestyle": "-.", "linewidth": 1.0}))
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def loss_figure(history: Sequence[dict], events: Sequence[dict] = ()) -> Figure:
  """Left: the logged train loss = CE + Σ λ·term, its parts (train CE and Σ λ·term = loss − CE) and the test CE.
  Right: each regularizer term before weighting (``train_orth``, ``train_sparsity``, ``train_l2``), log scale; a
  term is absent where its λ is 0 (the fine-tune phase turns λs off, so the loss drops there by λs·sparsity): a curve
  that stops before the last epoch says so in its legend entry and at its end ('λ off from epoch N').

  Args:
    history: the metrics rows.
    events: the pruning-event entries.

  Returns:
    The figure (axes titled 'objective' and 'regularizer terms').
  """
  fig = Figure(figsize=(11, 4), layout="constrained")
  objective, terms = fig.subplots(1, 2)
  epochs, loss = series(history, "train_loss")
  ce_epochs, ce = series(history, "train_ce")
  curves = [(epochs, loss, "train loss = CE + Σ λ·term", {"color": "black"}),
            (ce_epochs, ce, "train CE", {"color": "tab:blue"}),
            (*series(history, "test_loss"), "test CE", {"color": "tab:orange", "marker": "o"})]
  if len(ce) == len(loss) and len(loss):
    curves.append((epochs, loss - ce, "Σ λ·term = train loss − CE", {"color": "tab:pink", "linestyle": "--"}))
  values = np.concatenate([v for _, v, _, _ in curves]) if curves else np.zeros(0)
  positive = values[values > 0]
  log = positive.size > 0 and positive.max() / positive.min() > 30
  for x, y, label, style in curves:
    keep = y > 0 if log else np.ones(len(y), bool)
    if keep.any():
      objective.plot(x[keep], y[keep], label=label, **style)
  if log:
    objective.set_yscale("log")
  objective.set(xlabel="epoch", ylabel="loss (nats" + (", log scale)" if log else ")"),
                title="objective (λ-weighted: CE + Σ λ·term)")
  last_epoch = max((h["epoch"] for h in history), default=0)
  for (key, label), color in zip(REG_TERMS, ("tab:brown", "tab:olive", "tab:cyan")):
    x, y = series(history, key)
    if (y > 0).any():
      x, y = x[y > 0], y[y > 0]
      off = f" (λ = 0 after epoch {int(x[-1])})" if x[-1] < last_epoch else ""
      terms.semilogy(x, y, label=f"{key} = {label}{off}", color=color, marker=".")
      if off:  # the curve stops where its λ is switched off (the fine-tune phase): say so at its end
        terms.annotate(f"λ off from epoch {int(x[-1]) + 1}", (x[-1], y[-1]), xytext=(6, 0),
                       textcoords="offset points", va="center", fontsize=7, color=color, gid=f"off:{key}")
  if not terms.lines:
    terms.text(0.5, 0.5, "no regularizer terms logged", ha="center", va="center", transform=terms.transAxes)
  terms.set(xlabel="epoch", ylabel="term value (unweighted, log scale)", title="regularizer terms (before × λ)")
  for ax in (objective, terms):
    mark_phases(ax, history, events)
  legend_below(fig, (objective, terms))
  return fig


def accuracy_figure(history: Sequence[dict], events: Sequence[dict] = ()) -> Figure:
  """Train and test accuracy per epoch, the pruning events marked and the fine-tune phase shaded.

  Args:
    history: the metrics rows.
    events: the pruning-event entries.

  Returns:
    The figure (one axes titled 'accuracy').
  """
  fig = Figure(figsize=(6.5, 4.3), layout="constrained")
  ax = fig.subplots()
  ax.plot(*series(history, "train_accuracy"), label="train (mean over the epoch)", color="tab:blue")
  ax.plot(*series(history, "test_accuracy"), label="test", color="tab:orange", marker="o")
  mark_phases(ax, history, events)
  x, test = series(history, "test_accuracy")
  title = f"accuracy (final test {test[-1]:.4f}, best {test.max():.4f})" if len(test) else "accuracy"
  ax.set(xlabel="epoch", ylabel="top-1 accuracy", title=title)
  legend_below(fig, [ax])
  return fig


# The compression panels: (row column, the summary's value at the start, axis label); a panel is drawn when the
# rows have its column: the method's own quantity first (ranks with SVD layers, channels with slimming, nonzero
# params with masks), then MACs and params for every run.
COMPRESSION_PANELS = (("total_rank", "rank_before", "total rank (Σ over SVD layers)"),
                      ("bn_channels", "bn_channels_before", "BN channels (slimming)"),
                      ("params_nonzero", None, "nonzero params (masks)"),
                      ("macs", "macs_before", "MACs per example"), ("params", "params_before", "params (all layers)"))


def compression_figure(history: Sequence[dict], events: Sequence[dict] = (), summary: Mapping | None = None) -> Figure:
  """What the run's method reduces, per epoch (epoch 0 = the run's start from ``summary``), as steps: a row's values
  hold after its epoch's events until the next epoch's. One panel per column of ``COMPRESSION_PANELS`` the rows
  have: total rank only with SVD layers, channels with slimming, nonzero params with masks; MACs and params always.

  Args:
    history: the metrics rows.
    events: the pruning-event entries.
    summary: the end-of-run summary (``rank_before``, ``macs_before``, ``params_before``, ...), or None.

  Returns:
    The figure (axes titled by quantity, start -> end and the reduction).
  """
  summary = summary or {}
  panels = [p for p in COMPRESSION_PANELS if len(series(history, p[0])[0]) or p[0] in ("macs", "params")]
  fig = Figure(figsize=(4 * len(panels), 3.8), layout="constrained")
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (key, before, label) in zip(axes, panels):
    x, y = series(history, key)
    if before in summary:
      x, y = np.concatenate([[0.0], x]), np.concatenate([[float(summary[before])], y])
    ax.plot(x, y, drawstyle="steps-post", marker="o", color="tab:blue", label="value after the epoch's events")
    mark_phases(ax, history, events)
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    title = label.split(" (")[0]
    if len(y):
      short = EngFormatter(places=0 if y[0] < 1000 else 2, sep="").format_eng
      title += f": {short(y[0])} → {short(y[-1])} ({y[0] / max(y[-1], 1):.2f}× fewer)"
    ax.set(xlabel="epoch", ylabel=label, title=title)
  legend_below(fig, axes)
  return fig
