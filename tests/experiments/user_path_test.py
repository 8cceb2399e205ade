"""A run says what it does: the start-up lines, a finished run re-run touches nothing, configs by name after a
non-editable install, ``--help`` and ``--list_configs``, no silent default workdir."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from experiments.run import cli, loop
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _files(root):
  """{path: (mtime_ns, sha256)} of every file under ``root``."""
  out = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        out[path] = (os.stat(path).st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
  return out


def test_a_run_announces_itself_and_a_finished_rerun_changes_nothing(tmp_path, caplog):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"), n_train=96, n_test=32)
  c = helpers.tiny_config(data_dir, num_epochs=1, finetune_epochs=0, **{"pruning.enabled": False})
  workdir = str(tmp_path / "run")
  with caplog.at_level("INFO", logger="jaxsvd"):
    summary = loop.run(c, workdir)
  text = caplog.text
  assert re.search(r"jaxsvd \S+: resnet8, SVD channel-wise \(mode auto\), compute float32; config differs from the "
                   r"defaults in:\n  .*dataset='fashion_mnist'", text, re.S), text
  assert f"data: fashion_mnist: 96 train / 32 test images of 28x28x1 from {data_dir}, normalized by mean [" in text
  assert "devices: 1 process(es), 1 cpu device(s) used (parallel='none')" in text
  assert f"workdir: {os.path.abspath(workdir)} (a new run); 1 epochs" in text
  before = _files(workdir)
  caplog.clear()
  with caplog.at_level("INFO", logger="jaxsvd"):
    again = loop.run(c, workdir)
  assert again == {k: v for k, v in summary.items() if k != "plots"}
  assert f"{os.path.abspath(workdir)} holds a finished run (epoch 1 of 1" in caplog.text
  assert "nothing to do, no file changed" in caplog.text
  assert _files(workdir) == before  # not a byte, not an mtime: metrics, plots, exports, lock, checkpoints
  c.num_epochs = 2  # raising num_epochs continues the run
  assert loop.run(c, workdir)["epochs"] == 2


def test_missing_workdir_flag_is_said(capsys):
  seen = []
  main = cli.main_for(lambda c, workdir: seen.append(workdir), "fashion_mnist", "runs/somewhere")
  main(["prog"])  # the CLI's log handler writes to stderr
  assert seen == ["runs/somewhere"]
  assert "no --workdir given: writing to runs/somewhere (name one with --workdir=DIR)" in capsys.readouterr().err


def _run(args, cwd, env=None):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})


def test_help_lists_the_flags_and_names_pages_that_exist():
  for program in ("cifar_svd", "pruning_from_scratch", "paper_recipe"):
    proc = _run(["-m", f"experiments.{program}", "--help"], REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--config=NAME|FILE.py[:ARGS]" in proc.stdout or "--config=NAME[:ARGS] | FILE.py[:ARGS]" in proc.stdout
    assert "--workdir=DIR" in proc.stdout and "--list_configs" in proc.stdout
    for page in re.findall(r"docs/[\w/]+\.md", proc.stdout):
      assert os.path.isfile(os.path.join(REPO, page)), (program, page)
  for tool in ("export", "predict"):
    proc = _run(["-m", f"experiments.{tool}", "--help"], REPO)
    assert proc.returncode == 0 and "--workdir" in proc.stdout, proc.stderr[-2000:]


def _check_configs_by_name(python, cwd, env=None):
  listed = subprocess.run([python, "-m", "experiments.cifar_svd", "--list_configs"], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})
  assert listed.returncode == 0, listed.stderr[-2000:]
  assert re.search(r"^fashion_mnist +Quick offline demo", listed.stdout, re.M), listed.stdout
  code = ("import experiments, os; from experiments.run import cli; "
          "c, _ = cli.parse(['p', '--config=fashion_mnist'], 'paper', 'runs/x'); "
          "p, _ = cli.parse(['p', '--config=paper:resnet20,channel,hoyer'], 'paper', 'runs/x'); "
          "print(experiments.__file__, c.dataset, p.model, p.reg.sparsity_type)")
  proc = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})})
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.split()


def test_configs_by_name_from_outside_the_repository(tmp_path):
  """As a non-editable install lays the packages out: a copy of them, run from another directory."""
  site = tmp_path / "site"
  for package in ("jaxsvd", "experiments"):
    shutil.copytree(os.path.join(REPO, package), site / package, ignore=shutil.ignore_patterns("__pycache__"))
  (tmp_path / "elsewhere").mkdir()
  where, dataset, model, sparsity = _check_configs_by_name(sys.executable, tmp_path / "elsewhere",
                                                           {"PYTHONPATH": str(site)})
  assert where.startswith(str(site)) and (dataset, model, sparsity) == ("fashion_mnist", "resnet20", "hoyer")
  with pytest.raises(ValueError, match=r"--config=fashon_mnist: no packaged config named 'fashon_mnist' \(python -m "
                                       r"experiments.cifar_svd --list_configs lists them\)"):
    cli.parse(["p", "--config=fashon_mnist"], "paper", "runs/x")


@pytest.mark.slow
def test_configs_by_name_after_pip_install_in_a_fresh_venv(tmp_path):
  """``pip install .`` (not editable) into a fresh venv whose dependencies come from this one's site-packages."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
  python = str(venv / "bin" / "python")
  purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True).stdout.strip()
  with open(os.path.join(purelib, "deps.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")  # jax, flax, ... (not processed as a site dir: no editable hooks)
  source = tmp_path / "source"  # a copy: setuptools builds in the source tree
  for item in ("jaxsvd", "experiments"):
    shutil.copytree(os.path.join(REPO, item), source / item, ignore=shutil.ignore_patterns("__pycache__"))
  for item in ("pyproject.toml", "README.md"):
    shutil.copy(os.path.join(REPO, item), source / item)
  built = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(source)], capture_output=True,
                         text=True, timeout=600)
  if built.returncode != 0 and "Could not find a version that satisfies" in built.stderr:
    pytest.skip("no package index reachable to build the wheel")
  assert built.returncode == 0, built.stderr[-2000:]
  (tmp_path / "elsewhere").mkdir()
  where, dataset, model, _ = _check_configs_by_name(python, tmp_path / "elsewhere")
  assert where.startswith(purelib) and (dataset, model) == ("fashion_mnist", "resnet20")
