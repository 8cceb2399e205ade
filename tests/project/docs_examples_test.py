"""The code in README.md and docs/*.md runs: every ```python block of a page, in order, in one namespace.

A page whose first lines hold ``<!-- examples: slow -->`` runs only with ``-m slow`` (its examples are tested in
smaller form elsewhere); blocks in other languages (bash, text) are not run.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import pathlib
import re

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
SLOW_MARK = "<!-- examples: slow -->"


def python_blocks(text: str) -> list[str]:
  """The bodies of the ```python fenced blocks of a markdown text, in order."""
  return _BLOCK.findall(text)


def _page_param(path: pathlib.Path):
  text = path.read_text()
  marks = [pytest.mark.slow] if SLOW_MARK in text[:500] else []
  return pytest.param(path, marks=marks, id=str(path.relative_to(REPO)))


@pytest.mark.parametrize("page", [_page_param(p) for p in PAGES if python_blocks(p.read_text())])
def test_the_page_examples_run(page, monkeypatch):
  monkeypatch.chdir(REPO)
  namespace = {"__name__": f"docs_example_{page.stem}"}
  for i, block in enumerate(python_blocks(page.read_text())):
    code = compile(block, f"{page.name}[python block {i}]", "exec", dont_inherit=True)  # not this file's __future__
    exec(code, namespace)  # noqa: S102 - our own documentation


def test_the_readme_and_docs_have_examples():
  counted = {p.name: len(python_blocks(p.read_text())) for p in PAGES}
  assert counted.get("README.md", 0) >= 2, counted  # the linen and NNX examples
  assert sum(counted.values()) >= 4, counted


def test_block_extraction():
  text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
  assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]
  assert os.path.isfile(REPO / "README.md")


def test_the_readme_figure_is_drawn_from_the_results_table(tmp_path):
  spec = importlib.util.spec_from_file_location("plot_results", REPO / "docs" / "figures" / "plot_results.py")
  plot_results = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(plot_results)
  rows = plot_results.measured_rows((REPO / "docs" / "results.md").read_text())
  assert [label for label, _, _ in rows][:2] == ["fashion_mnist_dense", "fashion_mnist"] and len(rows) == 7
  assert ("fashion_mnist_dense", 9.15, 91.44) in rows and all(0 < m < 10 and 85 < a < 95 for _, m, a in rows)
  plot_results.plot(rows, str(tmp_path / "results.png"))
  assert (tmp_path / "results.png").stat().st_size > 10_000
  assert "figures/results.png" in (REPO / "docs" / "results.md").read_text()


def test_the_readme_frontier_table_is_the_sweeps_measured_rows():
  """Every 'mean ± half range' of the README's frontier table is recomputed from the sweep's results.csv."""
  rows = list(csv.DictReader(open(REPO / "docs" / "figures" / "frontier.csv")))
  groups = {}
  for row in rows:
    groups.setdefault((row["method"], row["budget"]), []).append(100 * float(row["test_accuracy"]))
  readme = (REPO / "README.md").read_text()
  assert "docs/figures/frontier_macs.png" in readme and (REPO / "docs" / "figures" / "frontier_macs.png").exists()
  pairs = np.array([(float(m), float(h)) for m, h in re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d)", readme)])
  cells = {key: (np.mean(a), (max(a) - min(a)) / 2) for key, a in groups.items()}
  shown = [key for key, cell in cells.items() if np.any(np.all(np.abs(pairs - cell) < 0.0051, axis=1))]
  assert len(rows) == 46 and len(groups) == 23
  # The README shows every method but the compress source (dense_pre) at every budget it ran.
  assert sorted(set(cells) - set(shown)) == [("dense_pre", "")], sorted(set(cells) - set(shown))
