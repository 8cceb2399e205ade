"""The code in README.md and docs/*.md runs: every ```python block of a page, in order, in one namespace.

A page whose first lines hold ``<!-- examples: slow -->`` runs only with ``-m slow`` (its examples are tested in
smaller form elsewhere); blocks in other languages (bash, text) are not run.
"""

from __future__ import annotations

import os
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
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
    code = compile(block, f"{page.name}[python block {i}]", "exec")
    exec(code, namespace)  # noqa: S102 - our own documentation


def test_the_readme_and_docs_have_examples():
  counted = {p.name: len(python_blocks(p.read_text())) for p in PAGES}
  assert counted.get("README.md", 0) >= 2, counted  # the linen and NNX examples
  assert sum(counted.values()) >= 4, counted


def test_block_extraction():
  text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n"
  assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]
  assert os.path.isfile(REPO / "README.md")
