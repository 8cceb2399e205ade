"""Draws docs/figures/results.png (README's figure) from the measured table in docs/results.md.

  python docs/figures/plot_results.py            # rewrites docs/figures/results.png

Each row of the table (a real run, config named in the row) becomes one point: MACs per image against test
accuracy, so the figure can never disagree with the table.
"""

import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROW = re.compile(r"^\| (?P<run>[^|]+?) \| \*\*(?P<acc>[\d.]+) %\*\* \| [^|]+ \| (?P<macs>[\d.]+) M")
CONFIG = re.compile(r"`(fashion_mnist[a-z_]*)\.py`")
LABELS = {"fashion_mnist_dense": "dense", "fashion_mnist": "SVD + energy pruning",
          "fashion_mnist_budget": "SVD + budget 3×, cubic ramp",
          "the same with `budget_ramp=none`": "SVD + budget 3×, no ramp",
          "fashion_mnist_slimming": "network slimming", "fashion_mnist_from_scratch": "pruning from scratch",
          "fashion_mnist_svd_slimming": "SVD + slimming"}
LEFT = {"SVD + energy pruning"}  # labels placed left of their point (the budget points sit just above it)


def measured_rows(markdown: str) -> list[tuple[str, float, float]]:
  """(label, MACs per image in millions, test accuracy in %) for each result row of the table.

  Args:
    markdown: the text of docs/results.md.

  Returns:
    One tuple per row, in the table's order; the label is the row's config name (or its first words).
  """
  rows = []
  for line in markdown.splitlines():
    if match := ROW.match(line):
      config = CONFIG.search(match["run"])
      label = config[1] if config else match["run"].split("(")[0].strip()
      rows.append((label, float(match["macs"]), float(match["acc"])))
  return rows


def plot(rows, path: str) -> None:
  """Writes the scatter of ``rows`` (from ``measured_rows``) to ``path``.

  Args:
    rows: (label, MACs in millions, accuracy in %) tuples.
    path: the PNG to write.
  """
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
  for label, macs, acc in rows:
    ax.scatter(macs, acc, s=40, color="tab:gray" if "dense" in label else "tab:blue")
    name = LABELS.get(label, label)
    left = name in LEFT
    ax.annotate(name, (macs, acc), textcoords="offset points", xytext=(-7, -3) if left else (6, 4),
                ha="right" if left else "left", fontsize=8)
  ax.set_xlabel("MACs per 28×28 image (millions)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Fashion-MNIST, ResNet-8, 6 epochs, one run each (test accuracy swings 2–4 points\n"
               "between epochs): docs/results.md", fontsize=9)
  ax.set_xlim(0, max(m for _, m, _ in rows) * 1.3)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


if __name__ == "__main__":
  table = open(os.path.join(HERE, "..", "results.md")).read()
  plot(measured_rows(table), sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results.png"))
