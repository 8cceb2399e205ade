"""The figures' common look: matplotlib style, resolution, the legend below the axes and short layer names (imports
matplotlib: import it only to plot)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

DPI = 150
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "figure.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.5, "lines.markersize": 4}


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


__all__ = ["DPI", "STYLE", "legend_below", "short_names"]
