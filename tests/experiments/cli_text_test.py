"""What the command line prints for a reader: --list_configs aligned for the longest name and never cut,
--describe_config, --help without reST markup, and a missing checkpoint's next step."""

import ast
import os
import re
import subprocess
import sys

import pytest

from experiments.run import cli
from jaxsvd import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _doc(name, config_dir=cli.CONFIG_DIR):
  with open(os.path.join(config_dir, f"{name}.py")) as f:
    return ast.get_docstring(ast.parse(f.read()))


def test_list_configs_aligns_on_the_longest_name_and_cuts_nothing():
  text = cli.list_configs()
  names = cli.config_names()
  longest = max(names, key=len)
  column = len(longest) + 2
  lines = text.splitlines()
  assert "..." not in text and all(len(line) <= 120 for line in lines)
  entry = next(i for i, line in enumerate(lines) if line.startswith(longest + " "))
  assert lines[entry][column - 2:column] == "  " and lines[entry][column] != " "  # the longest name keeps its column
  for name in names:  # every entry starts at the same column and holds its whole first paragraph
    start = next(i for i, line in enumerate(lines) if line.split(" ")[0] == name)
    assert lines[start][:column].rstrip() == name and lines[start][column] != " "
    body = [lines[start][column:]]
    for line in lines[start + 1:]:
      if not line.startswith(" " * column):
        break
      body.append(line[column:])
    first = " ".join(_doc(name).split("\n\n")[0].split())
    assert " ".join(body).startswith(cli.plain(first)), name
    assert "[time: " in " ".join(body), name  # every packaged config states its run time


@pytest.mark.parametrize("name", cli.config_names())
def test_every_config_states_its_command_expected_result_and_time(name):
  doc = _doc(name)
  for field in ("command", "expected", "time"):
    assert re.search(rf"^ *{field} +\S", doc, re.M), (name, field)
  assert "2-core x86 CPU" in re.search(r"^ *time +(.+)$", doc, re.M).group(1)
  assert not re.search(r"session [0-9]|see[d]'s|issue [0-9]", doc, re.I)  # how the project was built: not said


def test_describe_config_prints_the_whole_docstring_and_names_close_matches():
  text = cli.describe_config("fashion_mnist_slimming_budget")
  assert text.startswith("fashion_mnist_slimming_budget (") and "``" not in text
  assert cli.plain(_doc("fashion_mnist_slimming_budget")) in text
  with pytest.raises(ValueError, match=r"^--describe_config=fashion_mnst: no packaged config named 'fashion_mnst' "
                                       r"\(did you mean fashion_mnist"):
    cli.describe_config("fashion_mnst")
  proc = subprocess.run([sys.executable, "-m", "experiments.cifar_svd", "--describe_config=nope"], cwd=REPO,
                        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


def test_help_is_plain_text():
  for program in ("cifar_svd", "export"):
    proc = subprocess.run([sys.executable, "-m", f"experiments.{program}", "--help"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0 and "--workdir" in proc.stdout, proc.stderr[-2000:]
    assert "``" not in proc.stdout and ":func:" not in proc.stdout
  assert cli.plain("one ``error:`` line, :func:`f` and ``a='b'``") == "one 'error:' line, f and a='b'"


def test_a_missing_checkpoint_names_the_command_that_writes_one(tmp_path):
  (tmp_path / "run" / "checkpoints").mkdir(parents=True)
  with pytest.raises(checkpoint.CheckpointError, match=r"no finalized checkpoint steps under .*checkpoints \(a training "
                                                        r"run writes them: python -m experiments.cifar_svd "
                                                        rf"--config=NAME --workdir={tmp_path / 'run'},"):
    checkpoint.resolve(str(tmp_path / "run" / "checkpoints"))
