"""``python -m experiments.sweep`` on tiny Fashion-MNIST files: points, results, resume after a kill, workers, errors.

The numbers in results.csv / results.md are checked against each run's own summary.json, and the mean ± half range
re-derived here with NumPy.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from experiments import sweep
from experiments.configs.sweeps import frontier
from experiments.sweeps import plots as sweep_plots
from experiments.sweeps import points as sweep_points
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = ("batch_size=16", "eval_batch_size=16", "max_steps_per_epoch=2", "num_epochs={epochs}", "progress_bar=False",
          "plots=False", "tensorboard=False", "checkpoint.async_save=False")
SWEEP = '''
from experiments.configs.sweeps import method, sweep

def get_config():
  methods = {{"dense": method("fashion_mnist_dense", overrides=("finetune_epochs=0",)),
             "svd": method("fashion_mnist_budget", overrides=("pruning.start=1", "finetune_epochs=0"),
                           budget="pruning.macs_reduction")}}
  if {compress}:
    methods["plain"] = method("compress", "compress", ("method=plain", "finetune_epochs=1", "calibration_examples=16"),
                              budget="macs_reduction", source="dense")
  c = sweep(methods, budgets=(2.0,), seeds={seeds}, common={common})
  c.latency.update(enabled={latency}, batch=8, repeats=2, rules=("auto",))
  return c
'''


def write_sweep(path, data_dir, epochs=2, seeds=(0, 1), compress=False, latency=True) -> str:
  common = (f"data_dir={data_dir}", *(c.format(epochs=epochs) for c in COMMON))
  with open(path, "w") as f:
    f.write(SWEEP.format(compress=compress, seeds=seeds, common=common, latency=latency))
  return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("data")), n_train=64, n_test=32)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory, data_dir):
  """dense + svd (2×), 2 seeds, 1 epoch of 2 steps each, one after another in this process."""
  tmp = tmp_path_factory.mktemp("sweep")
  config = write_sweep(tmp / "tiny.py", data_dir, epochs=1)
  root = str(tmp / "root")
  sweep.main(["sweep", f"--config={config}", f"--workdir={root}"])
  return root


@pytest.fixture(scope="module")
def worker_sweep(tmp_path_factory, data_dir):
  """dense + svd (2×) + plain compress of dense (2×), 2 seeds, 2 worker processes (slow: a jax start per point)."""
  tmp = tmp_path_factory.mktemp("sweep")
  config = write_sweep(tmp / "tiny.py", data_dir, compress=True)
  root = str(tmp / "root")
  sweep.main(["sweep", f"--config={config}", f"--workdir={root}", "--workers=2"])
  return root


def _csv(root):
  with open(os.path.join(root, "results.csv")) as f:
    return list(csv.DictReader(f))


def _summary(root, name):
  with open(os.path.join(root, name, "summary.json")) as f:
    return json.load(f)


def check_results(root, points):
  """results.csv against each summary.json, the table's mean ± half range re-derived, both figures written."""
  rows = {r["point"]: r for r in _csv(root)}
  assert sorted(rows) == sorted(points)
  for name, row in rows.items():
    summary = _summary(root, name)
    chex.assert_trees_all_close(float(row["test_accuracy"]), summary["test_accuracy"])
    assert int(row["macs"]) == summary["macs_after"] and int(row["params"]) == summary["params_after"]
    assert int(row["nonzero_params"]) > 0 and float(row["latency_ms"]) > 0
  dense_macs = np.mean([_summary(root, f"dense-s{s}")["macs_after"] for s in (0, 1)])
  chex.assert_trees_all_close(float(rows["svd-b2-s0"]["macs_reduction"]),
                              dense_macs / _summary(root, "svd-b2-s0")["macs_after"], rtol=1e-6)
  accs = np.array([_summary(root, f"svd-b2-s{s}")["test_accuracy"] for s in (0, 1)]) * 100
  table = open(os.path.join(root, "results.md")).read()
  line = next(x for x in table.splitlines() if x.startswith("| svd | 2× | 2 |"))
  assert f"{accs.mean():.2f} ± {(accs.max() - accs.min()) / 2:.2f}" in line
  assert "python -m experiments.cifar_svd --config=fashion_mnist_budget" in table
  for name in ("results_macs.png", "results_latency.png"):
    with open(os.path.join(root, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  return rows, table


def test_sweep_writes_rows_table_and_figures(tiny_sweep):
  check_results(tiny_sweep, ["dense-s0", "dense-s1", "svd-b2-s0", "svd-b2-s1"])


@pytest.mark.slow
def test_workers_and_compress_after_its_source(worker_sweep):
  rows, table = check_results(worker_sweep, ["dense-s0", "dense-s1", "plain-b2-s0", "plain-b2-s1", "svd-b2-s0",
                                             "svd-b2-s1"])
  assert float(rows["plain-b2-s0"]["macs_reduction"]) >= 2.0 - 1e-6  # compress honours its budget
  assert "python -m experiments.compress" in table and "--workers=2" in table


@pytest.mark.slow
def test_compress_point_runs_after_its_source(worker_sweep):
  root = worker_sweep
  for seed in (0, 1):
    compressed, source = _summary(root, f"plain-b2-s{seed}"), _summary(root, f"dense-s{seed}")
    assert compressed["source_test_accuracy"] == source["test_accuracy"]
    assert compressed["method"] == "plain"


def test_rerun_of_a_finished_sweep_runs_nothing(tiny_sweep, caplog):
  stamps = {n: os.path.getmtime(os.path.join(tiny_sweep, n, "summary.json")) for n in ("dense-s0", "svd-b2-s1")}
  config = os.path.join(os.path.dirname(tiny_sweep), "tiny.py")
  sweep.main(["sweep", f"--config={config}", f"--workdir={tiny_sweep}", "--config.latency.enabled=False"])
  assert "4 finished before" in caplog.text
  assert stamps == {n: os.path.getmtime(os.path.join(tiny_sweep, n, "summary.json")) for n in stamps}


def _epochs(workdir):
  with open(os.path.join(workdir, "metrics.csv")) as f:
    return [int(r["epoch"]) for r in csv.DictReader(f)]


def test_resume_after_sigkill_mid_point(tmp_path, data_dir):
  config = write_sweep(tmp_path / "kill.py", data_dir, epochs=2, seeds=(0,), latency=False)
  root = str(tmp_path / "root")
  argv = [f"--config={config}", f"--workdir={root}"]
  proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *argv], cwd=REPO, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  svd = os.path.join(root, "svd-b2-s0")
  deadline = time.monotonic() + 300
  while not (os.path.exists(os.path.join(svd, "metrics.csv")) and _epochs(svd)):  # svd runs after dense: mid-point
    assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before the kill"
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(svd, "summary.json"))
  dense_stamp = os.path.getmtime(os.path.join(root, "dense-s0", "summary.json"))
  sweep.main(["sweep", *argv])
  assert _epochs(svd) == [1, 2]  # resumed from its checkpoint: no epoch twice
  assert os.path.getmtime(os.path.join(root, "dense-s0", "summary.json")) == dense_stamp  # not rerun
  assert [r["point"] for r in _csv(root)] == ["dense-s0", "svd-b2-s0"]


@pytest.mark.parametrize("override, expected", [
    ("--config.methods.plain.source=nope", r"methods.plain.source: 'nope' is not another method"),
    ("--config.methods.svd.config=nosuch", r"methods.svd.config: --config=nosuch: no packaged config"),
    ("--config.methods.dense.command=fit", r"methods.dense.command: 'fit' is not one of"),
    ("--config.methods.dense.overrides=('nosuch=1',)", r"methods.dense \(point dense-s0\): .*no field 'nosuch'"),
    ("--config.methods.svd.overrides=('finetune_epochs=5',)", r"methods.svd \(point svd-b2-s0\): finetune_epochs=5"),
    ("--config.reference=svd2", r"reference: 'svd2' is not a method"),
    ("--config.budgets=(0.5,)", r"budgets: each budget is a compression factor >= 1"),
    ("--workers=0", r"--workers must be an int >= 1"),
])
def test_bad_sweep_is_one_line_error_before_anything_runs(tmp_path, data_dir, override, expected):
  config = write_sweep(tmp_path / "bad.py", data_dir, compress=True)
  root = tmp_path / "root"
  with pytest.raises(SystemExit) as err:
    sweep.main(["sweep", f"--config={config}", f"--workdir={root}", override])
  message = str(err.value.code)
  assert message.startswith("error: ") and "\n" not in message and re.search(expected, message), message
  assert not root.exists() or not any(p.is_dir() for p in root.iterdir())


def test_frontier_config_points():
  s = frontier.get_config()
  sweep_points.check_sweep(s)
  points = sweep_points.expand(s, "/tmp/frontier")
  names = [p.name for p in points]
  assert len(points) == 46 and len(set(names)) == 46
  assert names.index("dense_pre-s0") < names.index("svd_plain-b2-s0")
  by_name = {p.name: p for p in points}
  assert "--config.from_scratch.budget=0.25" in by_name["from_scratch-b4-s1"].argv
  assert "--config.source=/tmp/frontier/dense_pre-s1" in by_name["svd_whitened-b4-s1"].argv
  assert [p.budget for p in points if p.method == "dynamic"] == [2.0, 2.0]


def test_frontier_is_the_non_dominated_set():
  xy = [(1.0, 0.8), (2.0, 0.9), (2.0, 0.85), (0.5, 0.7), (3.0, 0.88), (float("nan"), 1.0)]
  expected = [i for i, (x, y) in enumerate(xy) if np.isfinite(x)
              and not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in xy if np.isfinite(x2))]
  assert sweep_plots.frontier(xy) == sorted(expected, key=lambda i: xy[i][0]) == [3, 0, 1]
