"""The per-layer figures of a run with SVD layers: each layer's rank per epoch (layer_ranks.png) and the spectra a rank
prune cut (spectra.png). This module imports matplotlib: import it only to plot.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from experiments.report import spectra
from experiments.report.style import legend_below, short_names
from jaxsvd.core.structure import iter_svd_layers, unboxed

MAX_SPECTRA_PANELS = 24


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
                  label="the kept directions at the end of the run")
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


__all__ = ["MAX_SPECTRA_PANELS", "rank_matrix", "layer_ranks_figure", "spectra_record", "spectrum_panel",
           "spectra_figure"]
