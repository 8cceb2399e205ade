"""A sweep's Pareto figures: the test metric (accuracy; a language model's perplexity, lower is better) vs MACs
(``results_macs.png``) and vs deployed latency (``results_latency.png``), one marker per method, error bars over seeds (half the range), the frontier marked. This
module imports matplotlib: import it only to plot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from experiments.report import style

MARKERS = "osD^v<>pP*hX8"
AXES = {"macs": ("MACs per image (M)", 1e-6, "results_macs.png"),
        "latency_ms": ("deployed latency (ms per batch)", 1.0, "results_latency.png")}
# the y axis: the first of these test metrics some point reports: (label, scale, higher is better)
YS = {"test_accuracy": ("test accuracy (%)", 100.0, True), "test_perplexity": ("test perplexity", 1.0, False)}


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
  """Indices of the Pareto-optimal points (no other point has a lower-or-equal x and a higher-or-equal y, one of
  them strictly), sorted by x.

  Args:
    points: (cost x, accuracy y) pairs; non-finite ones are never on the frontier.

  Returns:
    The frontier's indices, by increasing x.
  """
  ok = [i for i, (x, y) in enumerate(points) if np.isfinite(x) and np.isfinite(y)]
  best = []
  for i in ok:
    xi, yi = points[i]
    if not any(points[j][0] <= xi and points[j][1] >= yi and points[j] != points[i] for j in ok):
      best.append(i)
  return sorted(best, key=lambda i: points[i][0])


def y_metric(groups: Sequence[dict]) -> str:
  """The first of ``YS`` that some group reports (finite mean); 'test_accuracy' when none does."""
  return next((k for k in YS if any(np.isfinite(g.get(k, (np.nan,))[0]) for g in groups)), "test_accuracy")


def pareto_figure(groups: Sequence[dict], x_key: str, y_key: str = "test_accuracy") -> Figure:
  """``y_key`` vs ``x_key`` ('macs' | 'latency_ms'): one marker and colour per method, x and y error bars of
  half the range over seeds, the frontier as a dashed step line through its points (gid 'frontier').

  Args:
    groups: ``sweeps.results.aggregate``'s entries.
    x_key: the cost column.
    y_key: the metric, a key of ``YS`` (a lower-is-better one's frontier is of its lowest values).

  Returns:
    The figure.
  """
  label, scale, _ = AXES[x_key]
  y_label, y_scale, higher = YS[y_key]
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.subplots()
  methods = list(dict.fromkeys(g["method"] for g in groups))
  colors = matplotlib.colormaps["tab20"].colors
  for k, method in enumerate(methods):
    mine = [g for g in groups if g["method"] == method and np.isfinite(g[x_key][0])]
    if not mine:
      continue
    ax.errorbar([g[x_key][0] * scale for g in mine], [g[y_key][0] * y_scale for g in mine],
                xerr=[g[x_key][1] * scale for g in mine], yerr=[g[y_key][1] * y_scale for g in mine],
                fmt=MARKERS[k % len(MARKERS)], color=colors[k % len(colors)], capsize=2, label=method,
                linestyle="none")
  xy = [(g[x_key][0] * scale, g[y_key][0] * y_scale) for g in groups]
  best = frontier(xy if higher else [(x, -y) for x, y in xy])
  if best:
    ax.step([xy[i][0] for i in best], [xy[i][1] for i in best], where="post", color="0.3", linestyle="--",
            linewidth=1.0, label="frontier", gid="frontier", zorder=0)
  ax.set_xlabel(label)
  ax.set_ylabel(y_label)
  ax.set_title(f"{y_label.split(' (')[0].removeprefix('test ')} vs {label.split(' (')[0]} (mean ± half range over "
               "seeds)")
  style.legend_below(fig, [ax])
  return fig


def pareto_figures(groups: Sequence[dict], root: str) -> list[str]:
  """Writes ``results_macs.png`` and ``results_latency.png`` into ``root``.

  Args:
    groups: ``sweeps.results.aggregate``'s entries.
    root: the sweep's directory.

  Returns:
    The two paths.
  """
  paths = []
  with matplotlib.rc_context(style.STYLE):
    for key, (_, _, name) in AXES.items():
      paths.append(os.path.join(root, name))
      pareto_figure(groups, key, y_metric(groups)).savefig(paths[-1], dpi=style.DPI)
  return paths


__all__ = ["MARKERS", "AXES", "YS", "y_metric", "frontier", "pareto_figure", "pareto_figures"]
