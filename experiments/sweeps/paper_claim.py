"""Energy-threshold curves of a ``paper_claim`` sweep (Yang et al. 2020's claim that the sparsity regularizer lets
energy pruning remove more directions at the same accuracy): one CSV row per evaluated point, the accuracy–MACs
figure and the two tables of docs/results.md.

  python -m experiments.sweeps.paper_claim runs/paper_claim docs/figures      # writes paper_claim.{csv,png}
  python -m experiments.sweeps.paper_claim ROOT OUT_DIR --config=FILE.py      # another sweep config of that shape
  python -m experiments.sweeps.paper_claim --tables docs/figures/paper_claim.csv  # the tables, from the CSV alone

A curve is one (method, seed, finetune_epochs): its pruned points' (MACs, test accuracy) sorted by MACs, joined by
straight lines (the unpruned run is a reference row, not a curve point). Table 1 reads each curve at MACs = dense
MACs / r (no value outside the curve's MACs range); table 2 gives the largest r = dense MACs / MACs at which the
curve still reaches accuracy ≥ dense − d (the smallest MACs of any point or line crossing at or above that
accuracy). Each cell is the mean ± half the range over the seeds, '—' when the curve of one seed does not reach it.
Dense MACs and accuracy are the dense runs' means. This module imports matplotlib.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import itertools
import json
import os
import sys
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from experiments.configs.sweeps import paper_claim
from experiments.report import style
from experiments.run import cli
from experiments.sweeps import points as sweep_points
from jaxsvd.data import datasets

COLUMNS = ("method", "sparsity_type", "sparsity", "orthogonality", "seed", "energy", "finetune_epochs", "epochs",
           "train_examples", "test_accuracy", "macs")
REDUCTIONS = (1.05, 3.5, 5.5, 7.5)  # table 1: accuracy at dense MACs / r (where the measured curves lie)
DROPS = (0.005, 0.01, 0.02, 0.05)  # table 2: the largest MACs reduction at accuracy >= dense - d
REFERENCE = "dense"


@functools.cache
def _train_examples(dataset: str, data_dir: str, data_source: str, train_subset) -> int:
  """The training examples a run used: ``train_subset``, or the whole split (None or -1)."""
  if train_subset not in (None, -1):
    return int(train_subset)
  return len(datasets.load_dataset(dataset, data_dir, data_source).train_images)


def _row(method: str, c, seed: int, energy: float, finetune: int, accuracy: float, macs: int) -> dict:
  """A CSV row; ``c`` is the config the model was trained with (the source's, for a prune point)."""
  svd = bool(c.svd.enabled)
  return {"method": method, "sparsity_type": c.reg.sparsity_type if svd else "",
          "sparsity": float(c.reg.sparsity) if svd else 0.0, "orthogonality": float(c.reg.orthogonality) if svd else 0.0,
          "seed": seed, "energy": energy, "finetune_epochs": finetune, "epochs": int(c.num_epochs),
          "train_examples": _train_examples(c.dataset, c.data_dir, c.data_source, c.train_subset),
          "test_accuracy": float(accuracy), "macs": int(macs)}


def collect(s, root: str) -> list[dict]:
  """The CSV rows of the finished points of sweep ``s`` under ``root``.

  A trained point gives one row (energy 0: not pruned); a prune point (command 'compress', method energy) gives two,
  finetune_epochs 0 (its accuracy before the fine-tune) and F, both labelled with its source's method and training
  config. Unfinished points are left out.

  Args:
    s: the sweep config (``experiments/configs/sweeps/paper_claim.py``).
    root: the sweep's directory.

  Returns:
    Rows with ``COLUMNS``, sorted by method, seed, energy, finetune_epochs.
  """
  points = sweep_points.expand(s, root)
  by_name = {p.name: p for p in points}
  rows = []
  for p in points:
    path = os.path.join(p.workdir, "summary.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      summary = json.load(f)
    if p.command == "compress":
      if "energy" not in summary:
        continue
      source = by_name[p.source]
      c, fine = sweep_points.parse_point(source), sweep_points.parse_point(p)
      for finetune, key in ((0, "test_accuracy_before_finetune"), (int(fine.finetune_epochs), "test_accuracy")):
        rows.append(_row(source.method, c, p.seed, float(summary["energy"]), finetune, summary[key],
                         summary["macs_after"]))
    elif sweep_points.finished(p, c := sweep_points.parse_point(p)):
      method = p.method if p.budget is None else f"{p.method}_{p.budget:g}x"
      rows.append(_row(method, c, p.seed, 0.0, 0, summary["test_accuracy"], summary["macs_after"]))
  return sorted(rows, key=lambda r: (r["method"], r["seed"], r["energy"], r["finetune_epochs"]))


def write_csv(rows: Sequence[dict], path: str) -> None:
  """``rows`` to ``path`` (``COLUMNS``)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: str) -> list[dict]:
  """The rows of a CSV ``write_csv`` wrote, with numbers as numbers."""
  ints, floats = ("seed", "finetune_epochs", "epochs", "train_examples", "macs"), ("sparsity", "orthogonality",
                                                                                  "energy", "test_accuracy")
  with open(path, newline="") as f:
    return [{k: int(v) if k in ints else float(v) if k in floats else v for k, v in row.items()}
            for row in csv.DictReader(f)]


def curves(rows: Sequence[dict]) -> dict:
  """{(method, finetune_epochs): {seed: [(macs, accuracy), ...] sorted by MACs}} of the pruned points (energy > 0);
  an unpruned run (energy 0) is a reference, not a curve's end: nothing is interpolated between it and its first
  prune."""
  out: dict = {}
  for r in rows:
    if r["energy"] > 0:
      out.setdefault((r["method"], r["finetune_epochs"]), {}).setdefault(r["seed"], []).append(
          (r["macs"], r["test_accuracy"]))
  return {k: {seed: sorted(v) for seed, v in sorted(by_seed.items())} for k, by_seed in sorted(out.items())}


def accuracy_at(curve: Sequence[tuple], macs: float) -> float | None:
  """The curve's accuracy at ``macs`` (linear between its two neighbours by MACs; at equal MACs the mean); None
  outside its MACs range."""
  xs = np.array([m for m, _ in curve], float)
  if not xs[0] <= macs <= xs[-1]:
    return None
  ys = np.array([a for _, a in curve], float)
  unique = np.unique(xs)
  return float(np.interp(macs, unique, [ys[xs == x].mean() for x in unique]))


def min_macs_at(curve: Sequence[tuple], accuracy: float) -> float | None:
  """The smallest MACs at which the curve (points and the lines between MACs-neighbours) has ≥ ``accuracy``."""
  best = [m for m, a in curve if a >= accuracy]
  for (m0, a0), (m1, a1) in itertools.pairwise(curve):
    if (a0 - accuracy) * (a1 - accuracy) < 0:  # the line crosses the level between the two points
      best.append(m0 + (accuracy - a0) * (m1 - m0) / (a1 - a0))
  return min(best) if best else None


def reference(rows: Sequence[dict]) -> tuple[float, float]:
  """(MACs, test accuracy) of the dense runs, each a mean over seeds."""
  dense = [r for r in rows if r["method"] == REFERENCE]
  if not dense:
    raise ValueError(f"method: the rows have no {REFERENCE!r} run (the reference of both tables)")
  return float(np.mean([r["macs"] for r in dense])), float(np.mean([r["test_accuracy"] for r in dense]))


def _cell(values: Sequence[float | None], fmt: str) -> str:
  if not values or any(v is None for v in values):
    return "—"
  return f"{np.mean(values):{fmt}} ± {(max(values) - min(values)) / 2:{fmt}}"


def _references(rows: Sequence[dict], dense_macs: float) -> list[str]:
  """The references' table: every unpruned run (energy 0: dense, narrow, each SVD run before pruning) by method,
  mean ± spread over seeds."""
  groups: dict = {}
  for r in rows:
    if r["energy"] == 0:
      groups.setdefault(r["method"], []).append(r)
  lines = ["| reference | seeds | MACs reduction (×) | test accuracy (%) |", "|---|---|---|---|"]
  for method, group in groups.items():
    lines.append(f"| {method} | {len(group)} | {_cell([dense_macs / r['macs'] for r in group], '.2f')} | "
                 f"{_cell([100 * r['test_accuracy'] for r in group], '.2f')} |")
  return lines


def tables(rows: Sequence[dict]) -> str:
  """The markdown tables of docs/results.md (module doc) from the CSV rows: the references, accuracy at matched
  MACs, MACs reduction at matched accuracy."""
  dense_macs, dense_acc = reference(rows)
  all_curves = curves(rows)
  lines = [*_references(rows, dense_macs), "",
           f"Accuracy (%) at matched MACs (dense: {dense_macs / 1e6:.2f} M MACs, {100 * dense_acc:.2f} %):", "",
           "| method | fine-tune | " + " | ".join(f"{r:g}× fewer MACs" for r in REDUCTIONS) + " |",
           "|---|---|" + "---|" * len(REDUCTIONS)]
  for (method, finetune), by_seed in all_curves.items():
    cells = [_cell([None if (a := accuracy_at(c, dense_macs / r)) is None else 100 * a for c in by_seed.values()],
                   ".2f") for r in REDUCTIONS]
    lines.append(f"| {method} | {finetune} epoch | " + " | ".join(cells) + " |")
  lines += ["", "MACs reduction (×) at accuracy ≥ dense − d:", "",
            "| method | fine-tune | " + " | ".join(f"d = {100 * d:g} pt" for d in DROPS) + " |",
            "|---|---|" + "---|" * len(DROPS)]
  for (method, finetune), by_seed in all_curves.items():
    cells = [_cell([None if (m := min_macs_at(c, dense_acc - d)) is None else dense_macs / m
                    for c in by_seed.values()], ".2f") for d in DROPS]
    lines.append(f"| {method} | {finetune} epoch | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def figure(rows: Sequence[dict]) -> Figure:
  """Accuracy vs MACs: one panel per finetune_epochs, one colour per pruned method and one line per seed (its
  energies), dense and narrow runs as references (black markers)."""
  all_curves = curves(rows)
  panels = sorted({f for _, f in all_curves})
  fig = Figure(figsize=(4 * len(panels) + 1, 4.2), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
  methods = list(dict.fromkeys(m for m, _ in all_curves))
  colors = matplotlib.colormaps["tab10"].colors
  for ax, finetune in zip(axes, panels):
    for k, method in enumerate(methods):
      for i, (seed, curve) in enumerate(all_curves.get((method, finetune), {}).items()):
        ax.plot([m / 1e6 for m, _ in curve], [100 * a for _, a in curve], marker="os"[i % 2], color=colors[k % 10],
                linestyle="-" if i == 0 else "--", label=f"{method} seed {seed}")
    for r in rows:
      if r["energy"] == 0 and r["method"] in methods:  # the trained run before pruning: an open marker
        k = methods.index(r["method"])
        ax.plot(r["macs"] / 1e6, 100 * r["test_accuracy"], marker="D", markerfacecolor="none", color=colors[k % 10],
                linestyle="none", label=f"{r['method']} unpruned")
      elif r["energy"] == 0:
        ax.plot(r["macs"] / 1e6, 100 * r["test_accuracy"], marker="*" if r["method"] == REFERENCE else "^",
                color="black", markersize=8, linestyle="none",
                label=r["method"] if r["method"] == REFERENCE else "narrow (dense, from scratch)")
    ax.set_xlabel("MACs per image (M)")
    ax.set_title(f"energy pruning, {finetune}-epoch fine-tune" if finetune else "energy pruning, no fine-tune")
  axes[0].set_ylabel("test accuracy (%)")
  style.legend_below(fig, list(axes))
  return fig


def write_figure(rows: Sequence[dict], path: str) -> None:
  """``figure(rows)`` to ``path``."""
  with matplotlib.rc_context(style.STYLE):
    figure(rows).savefig(path, dpi=style.DPI)


def sweep_config(value: str):
  """The sweep config ``--config`` names (a packaged sweep config's name or a file), loaded."""
  path = cli.resolve_config(value, os.path.dirname(os.path.abspath(paper_claim.__file__)))
  spec = importlib.util.spec_from_file_location("sweep_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def main(argv: Sequence[str]) -> int:
  """``ROOT OUT_DIR [--config=NAME|FILE]`` (the finished points of ROOT's sweep to OUT_DIR/paper_claim.{csv,png},
  the tables printed) or ``--tables CSV``; 2 on bad usage, 1 when ROOT holds no finished point."""
  if len(argv) == 2 and argv[0] == "--tables":
    print(tables(read_csv(argv[1])))
    return 0
  config = [a.partition("=")[2] for a in argv if a.startswith("--config=")]
  args = [a for a in argv if not a.startswith("--config=")]
  if len(args) != 2 or any(a.startswith("-") for a in args) or len(config) > 1:
    print("usage: python -m experiments.sweeps.paper_claim ROOT OUT_DIR [--config=NAME|FILE] | --tables CSV",
          file=sys.stderr)
    return 2
  root, out = args
  try:
    s = sweep_config(config[0] if config else "paper_claim")
  except ValueError as err:
    print(f"error: {cli.one_line(err)}", file=sys.stderr)
    return 2
  rows = collect(s, root)
  if not rows:
    print(f"error: ROOT={root!r} holds no finished point of the paper_claim sweep", file=sys.stderr)
    return 1
  os.makedirs(out, exist_ok=True)
  write_csv(rows, os.path.join(out, "paper_claim.csv"))
  write_figure(rows, os.path.join(out, "paper_claim.png"))
  print(tables(rows))
  return 0


__all__ = ["COLUMNS", "DROPS", "REDUCTIONS", "accuracy_at", "collect", "curves", "figure", "main", "min_macs_at",
           "read_csv", "reference", "tables", "write_csv", "write_figure"]

if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
