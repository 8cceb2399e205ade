"""The repository speaks of itself alone: no tracked file describes how it was built (numbered work periods, the
starting code's settings, tracker item numbers) instead of what it is. A measurement names its date and machine, a
setting names its paper (CHANGELOG.md keeps the history, per version)."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PATTERN = re.compile(r"session [0-9]|seed's|issue [0-9]", re.IGNORECASE)
EXEMPT = {"CHANGELOG.md", "tests/project/self_description_test.py"}


def tracked_files() -> list[str]:
  """The files git tracks in this checkout (skips the test outside a git work tree, e.g. in an unpacked sdist)."""
  try:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError) as e:
    pytest.skip(f"not a git work tree: {e}")
  return [name for name in out.decode().split("\0") if name]


def matches(text: str) -> list[tuple[int, str]]:
  """(line number, line) of every line of ``text`` that matches ``PATTERN``."""
  return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if PATTERN.search(line)]


def test_pattern_finds_what_it_must():
  assert [i for i, _ in matches("a\nmeasured in Session 8\nthe Seed's setting\n(issue 26 item 4)\nissues\n")] == [2, 3, 4]
  assert matches("pytest_sessionfinish(session)\nseed: 0\nthe issue's rows\n") == []


def test_no_tracked_file_describes_how_it_was_built():
  found = []
  for name in tracked_files():
    path = REPO / name
    if name in EXEMPT or not path.is_file():
      continue
    data = path.read_bytes()
    if b"\0" in data:  # binary
      continue
    found += [f"{name}:{i}: {line[:100]}" for i, line in matches(data.decode("utf-8", errors="replace"))]
  assert not found, ("lines that describe how the repository was built (name the paper, the date, the machine "
                     "instead; history goes to CHANGELOG.md):\n" + "\n".join(found))
