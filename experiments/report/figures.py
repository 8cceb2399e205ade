"""The run's figures (``run.outputs`` calls ``plot_all``): loss terms, accuracy, compression, per-layer ranks
and the spectra a rank prune cut. This module imports matplotlib: import it only to plot.

Every per-epoch figure draws each pruning event as a vertical line at the epoch it fired after (one style per kind)
and shades the fine-tune phase (the rows with ``finetune`` = 1, from the end of the last training epoch). A row's
accuracy and losses are measured before that epoch's events, its total rank, params and MACs after them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator, NullFormatter

from experiments.report import spectra
from jaxsvd.core.structure import iter_svd_layers, unboxed

DPI = 150
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "figure.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.5, "lines.markersize": 4}
EVENT_STYLE = {"online": {"color": "0.45", "linestyle": ":", "linewidth": 1.1},
               "final": {"color": "tab:red", "linestyle": "--", "linewidth": 1.3},
               "slimming": {"color": "tab:purple", "linestyle": "-.", "linewidth": 1.3}}
EVENT_NAMES = {"online": "online prune", "final": "final prune", "slimming": "slimming"}
FINETUNE = {"color": "tab:green", "alpha": 0.12}
REG_TERMS = (("train_orth", "orthogonality: Σ (‖UᵀU−I‖² + ‖VᵀV−I‖²)/r²"), ("train_sparsity", "sparsity: Σ R(s)"),
             ("train_l2", "l2: ½‖θ‖²"))
MAX_SPECTRA_PANELS = 24


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


def legend_below(fig: Figure, axes) -> None:
  """One legend for the figure, below the axes: every distinct label of ``axes``, in order.

  Args:
    fig: the figure (constrained layout).
    axes: the axes whose labelled artists go in.

  Returns:
    None.
  """
  found = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      found.setdefault(label, handle)
  if found:  # as many columns as fit the figure's width (~0.07 in per character at 8 pt, plus the handle)
    fit = int(fig.get_figwidth() / (0.07 * max(map(len, found)) + 0.7))
    fig.legend(list(found.values()), list(found), loc="outside lower center", ncols=max(1, min(len(found), fit)),
               frameon=False)


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


def short_names(paths: Sequence[str]) -> list[str]:
  """Layer paths without their common leading components ('ResNet_0/block1/conv' -> 'block1/conv').

  Args:
    paths: '/'-joined layer paths.

  Returns:
    The shortened names (a single path keeps its last component).
  """
  parts = [p.split("/") for p in paths]
  common = 0
  while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
    common += 1
  return ["/".join(p[common:]) for p in parts]


def rank_matrix(history: Sequence[dict], events: Sequence[dict], original: Mapping | None):
  """(layers, epochs, ranks[layer, epoch]): each layer's rank after each epoch's events (epoch 0 = ``original``).

  Args:
    history: the metrics rows (their epochs are the columns).
    events: the pruning-event entries; those with 'ranks' set the layers' ranks from their epoch on.
    original: {layer: rank at the start}, or None (NaN until a layer's first recorded event).

  Returns:
    The layer paths, the epochs and a float array (NaN: unknown).
  """
  recorded = sorted((e for e in events if e.get("ranks")), key=lambda e: e["epoch"])
  layers = list(dict.fromkeys([*(original or {}), *(p for e in recorded for p in e["ranks"])]))
  epochs = ([0] if original else []) + [h["epoch"] for h in history]
  current = dict(original or {})
  matrix = np.full((len(layers), len(epochs)), np.nan)
  for j, epoch in enumerate(epochs):
    for e in recorded:
      if e["epoch"] <= epoch:
        current.update(e["ranks"])
    matrix[:, j] = [current.get(p, np.nan) for p in layers]
  return layers, epochs, matrix


def layer_ranks_figure(history: Sequence[dict], events: Sequence[dict] = (), original: Mapping | None = None):
  """A heat map layer × epoch of each SVD layer's rank after the epoch's events, coloured by the fraction of its
  rank at the start (or its largest recorded rank) and, when it fits, each cell labelled with the rank.

  Args:
    history: the metrics rows.
    events: the pruning-event entries (their per-layer 'ranks').
    original: {layer: rank at the start} (the architecture's ``original_ranks``), or None.

  Returns:
    The figure (its image's data is that fraction), or None without per-layer ranks.
  """
  layers, epochs, ranks = rank_matrix(history, events, original)
  if not layers or not epochs:
    return None
  reference = np.array([original[p] if original and p in original else np.nanmax(row)
                        for p, row in zip(layers, ranks)], float)
  fig = Figure(figsize=(min(max(4.5, 2.5 + 0.45 * len(epochs)), 14), min(1.8 + 0.26 * len(layers), 16)),
               layout="constrained")
  ax = fig.subplots()
  image = ax.imshow(ranks / reference[:, None], aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                    interpolation="nearest")
  fig.colorbar(image, ax=ax, label="rank / rank at the start", shrink=0.9)
  if len(layers) * len(epochs) <= 400:
    for (i, j), value in np.ndenumerate(ranks):
      if not np.isnan(value):
        ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=6.5,
                color="white" if value / reference[i] < 0.6 else "black")
  ax.set_yticks(range(len(layers)), short_names(layers), fontsize=7 if len(layers) <= 40 else 5)
  ticks = range(0, len(epochs), max(1, math.ceil(len(epochs) / 20)))
  ax.set_xticks(list(ticks), [str(epochs[j]) for j in ticks])
  ax.grid(False)
  ax.set(xlabel="epoch (0: start; each column after that epoch's events)", ylabel="SVD layer",
         title=f"per-layer rank ({len(layers)} SVD layers)")
  return fig


def spectra_record(workdir: str, events: Sequence[dict]):
  """The spectra file of the run's final prune, else of its last online prune (``spectra.load_spectra``).

  Args:
    workdir: the run's directory.
    events: the pruning-event entries.

  Returns:
    (info, {layer: (|s| sorted, kept)}), or None if no rank prune fired or its file is missing.
  """
  pruned = [e for e in events if e.get("kind") in ("final", "online")]
  chosen = ([e for e in pruned if e["kind"] == "final"] or pruned)[-1:]
  for e in chosen:
    path = spectra.spectra_path(workdir, e["epoch"], e["kind"])
    if os.path.exists(path):
      return spectra.load_spectra(path)
  return None


def spectrum_panel(ax, name: str, s: np.ndarray, kept: int | None, after: np.ndarray | None) -> None:
  """One layer's sorted |s| (log scale): the kept directions, the pruned tail and the cut (a dashed line at
  ``kept`` + 0.5, gid 'cut'), plus the layer's |s| at the end of the run (only the kept directions remain).

  Args:
    ax: the axes.
    name: the layer's (short) name, in the title.
    s: |s| sorted descending along the last axis (a stacked layer: one curve per slice).
    kept: the number of directions kept, or None (no prune recorded: all drawn as kept, no cut).
    after: the layer's sorted |s| at the end of the run, or None.

  Returns:
    None.
  """
  rows = np.asarray(s, float).reshape(-1, np.shape(s)[-1])
  r = rows.shape[-1]
  k = r if kept is None else kept
  floor = max(float(rows[rows > 0].min()) * 0.5, 1e-30) if (rows > 0).any() else 1e-12
  x = np.arange(1, r + 1)
  for row in np.maximum(rows, floor):
    ax.semilogy(x[:k], row[:k], color="tab:blue", marker=".", markersize=2.5, linewidth=1.0, label="kept")
    if k < r:
      ax.semilogy(x[k:], row[k:], color="tab:red", marker=".", markersize=2.5, linewidth=1.0, label="pruned tail")
  if after is not None:
    after = np.asarray(after, float).reshape(-1, np.shape(after)[-1])
    for row in np.maximum(after, floor):
      ax.semilogy(np.arange(1, len(row) + 1), row, color="0.55", linewidth=3.0, alpha=0.45, zorder=1,
                  label="at the end of the run (directions kept)")
  title = f"{name}\n{k}/{r} kept"
  if kept is not None:
    ax.axvline(k + 0.5, color="black", linestyle="--", linewidth=1.0, gid="cut", label="cut")
    energy = np.sum(rows[:, :k] ** 2) / max(np.sum(rows**2), 1e-300)
    title += f", {energy:.1%} of Σs²"
  ax.set_title(title, fontsize=8)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
  low, high = ax.get_ylim()  # plain numbers; within a decade the minor ticks carry the labels
  ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
  ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}") if high / low < 10 else NullFormatter())


def spectra_figure(record, params) -> Figure | None:
  """A grid of per-layer spectra (``spectrum_panel``): before the recorded prune with its cut, and at the end of
  the run; without a record, the end-of-run spectra alone. Over ``MAX_SPECTRA_PANELS`` layers: the largest ones.

  Args:
    record: ``spectra_record``'s (info, layers), or None.
    params: host params (the end-of-run spectra).

  Returns:
    The figure (one titled panel per layer), or None without SVD layers.
  """
  final = {p: -np.sort(-np.abs(np.asarray(unboxed(n["s"]), float)), axis=-1) for p, n in iter_svd_layers(params)}
  if record is None:
    info, layers, after = "singular values at the end of the run (no rank prune recorded)", {
        p: (s, None) for p, s in final.items()}, {}
  else:
    (info, layers), after = record, final
  if not layers:
    return None
  names = list(layers)
  if len(names) > MAX_SPECTRA_PANELS:
    largest = set(sorted(names, key=lambda p: -np.shape(layers[p][0])[-1])[:MAX_SPECTRA_PANELS])
    info += f"; the {MAX_SPECTRA_PANELS} largest of {len(names)} layers"
    names = [p for p in names if p in largest]
  ncols = min(4, len(names))
  nrows = math.ceil(len(names) / ncols)
  fig = Figure(figsize=(2.9 * ncols, 2.2 * nrows + 0.9), layout="constrained")
  axes = fig.subplots(nrows, ncols, squeeze=False)
  for ax, name, short in zip(axes.flat, names, short_names(names)):
    spectrum_panel(ax, short, *layers[name], after.get(name))
  for ax in axes.flat[len(names):]:
    ax.set_axis_off()
  for ax in axes[:, 0]:
    ax.set_ylabel("|s| (log scale)")
  for ax in axes[-1]:
    ax.set_xlabel("index (by |s|, descending)")
  fig.suptitle(info)
  legend_below(fig, axes.flat)
  return fig
