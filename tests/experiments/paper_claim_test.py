"""Energy-threshold pruning of trained SVD runs through the sweep (``compress --config.method=energy``, per-method
axes) and ``experiments.sweeps.paper_claim``: ranks against a NumPy energy rule on the source's own singular values,
the CSV against each summary.json, the curve readings against brute-force sampling, and docs/results.md's tables
recomputed from docs/figures/paper_claim.csv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from experiments import compress, sweep
from experiments.configs.sweeps import paper_claim as paper_claim_sweep
from experiments.sweeps import paper_claim
from experiments.sweeps import points as sweep_points
from jaxsvd import checkpoint
from jaxsvd.core.structure import iter_svd_layers
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSV = os.path.join(REPO, "docs", "figures", "paper_claim.csv")
SWEEP = '''
from experiments.configs.sweeps import method, sweep
from experiments.configs.sweeps.paper_claim import TRAIN_ONLY

def get_config():
  methods = {{
      "svd_hoyer": method("fashion_mnist", overrides=(*TRAIN_ONLY, "reg.sparsity_type=hoyer", "reg.sparsity=0.07")),
      "svd_hoyer_e": method("compress", "compress", ("method=energy", "finetune_epochs=1", "reg.sparsity=0.0"),
                            source="svd_hoyer", axes=(("energy", (0.05, 0.5)),)),
      "dense": method("fashion_mnist_dense", overrides=("finetune_epochs=0",)),
  }}
  c = sweep(methods, budgets=(2.0,), seeds=(0,), common={common})
  c.latency.enabled = False
  return c
'''
COMMON = ("batch_size=16", "eval_batch_size=16", "max_steps_per_epoch=2", "num_epochs=1", "progress_bar=False",
          "plots=False", "tensorboard=False", "checkpoint.async_save=False")


@pytest.fixture(scope="module")
def energy_sweep(tmp_path_factory):
  """svd_hoyer (1 epoch of 2 steps), its prunes at e = 0.05 and 0.5 with a 1-epoch fine-tune, dense; one seed."""
  tmp = tmp_path_factory.mktemp("claim")
  data_dir = helpers.write_fashion_mnist(str(tmp / "data"), n_train=64, n_test=32)
  config = tmp / "claim.py"
  config.write_text(SWEEP.format(common=(f"data_dir={data_dir}", *COMMON)))
  root = str(tmp / "root")
  sweep.main(["sweep", f"--config={config}", f"--workdir={root}"])
  return str(config), root


def _summary(root, name):
  with open(os.path.join(root, name, "summary.json")) as f:
    return json.load(f)


def numpy_energy_keep(s: np.ndarray, e: float) -> int:
  """The smallest k whose k largest s² hold ≥ (1 − e) of Σ s² (Yang et al. 2020's energy rule)."""
  energy = np.cumsum(np.sort(np.abs(s))[::-1] ** 2)
  return int(np.argmax(energy >= (1 - e) * energy[-1] * (1 - 1e-12)) + 1)


def test_each_threshold_prunes_the_trained_runs_own_singular_values(energy_sweep):
  config, root = energy_sweep
  s = paper_claim.sweep_config(config)
  names = [p.name for p in sweep_points.expand(s, root)]
  assert names == ["svd_hoyer-s0", "svd_hoyer_e-s0-energy0.05", "svd_hoyer_e-s0-energy0.5", "dense-s0"]
  source = checkpoint.restore(os.path.join(root, "svd_hoyer-s0", "checkpoints"))
  singular = {path: np.asarray(node["s"]) for path, node in iter_svd_layers(source.variables["params"])}
  for e in (0.05, 0.5):
    summary = _summary(root, f"svd_hoyer_e-s0-energy{e:g}")
    assert summary["method"] == "energy" and summary["energy"] == e
    expected = {path: max(1, numpy_energy_keep(v, e)) for path, v in singular.items()}
    assert summary["ranks"] == expected
    assert summary["source_test_accuracy"] == _summary(root, "svd_hoyer-s0")["test_accuracy"]
  assert _summary(root, "svd_hoyer_e-s0-energy0.5")["macs_after"] < _summary(root, "svd_hoyer-s0")["macs_after"]


def test_csv_rows_are_the_summaries(energy_sweep, tmp_path):
  config, root = energy_sweep
  out = tmp_path / "out"
  assert paper_claim.main([root, str(out), f"--config={config}"]) == 0
  rows = paper_claim.read_csv(str(out / "paper_claim.csv"))
  assert [(r["method"], r["energy"], r["finetune_epochs"]) for r in rows] == [
      ("dense", 0.0, 0), ("svd_hoyer", 0.0, 0), ("svd_hoyer", 0.05, 0), ("svd_hoyer", 0.05, 1),
      ("svd_hoyer", 0.5, 0), ("svd_hoyer", 0.5, 1)]
  for r in rows[2:]:
    summary = _summary(root, f"svd_hoyer_e-s0-energy{r['energy']:g}")
    key = "test_accuracy" if r["finetune_epochs"] else "test_accuracy_before_finetune"
    chex.assert_trees_all_close(r["test_accuracy"], summary[key])
    assert r["macs"] == summary["macs_after"]
    assert (r["sparsity_type"], r["sparsity"], r["orthogonality"]) == ("hoyer", 0.07, 1.0)  # the source's training
    assert (r["epochs"], r["train_examples"]) == (1, 64)
  assert (out / "paper_claim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_energy_method_bad_inputs_are_one_line_errors(energy_sweep):
  _, root = energy_sweep
  c = paper_claim.sweep_config("paper_claim")  # any valid run config of the compress command will do
  point = next(p for p in sweep_points.expand(c, root) if p.command == "compress")
  config = sweep_points.parse_point(point)
  with config.unlocked():
    config.source = os.path.join(root, "dense-s0")
  with pytest.raises(ValueError, match=r"^source: .* is a dense run; method=energy"):
    compress.check_config(config)
  for value, span in ((0.0, r"\(0, 1\)"), (1.0, r"\(0, 1\)"), (True, r"\(0, 1\)")):
    with config.unlocked():
      config.update(source=os.path.join(root, "svd_hoyer-s0"), energy=value)
    with pytest.raises(ValueError, match=rf"^energy must be a fraction in {span}"):
      compress.check_config(config)


def brute_force(curve, n=200_001):
  """The piecewise-linear curve sampled densely: (macs grid, accuracy on it)."""
  xs, ys = np.array(curve, float).T
  grid = np.linspace(xs[0], xs[-1], n)
  return grid, np.interp(grid, xs, ys)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_curve_readings_equal_dense_sampling(seed):
  rng = np.random.default_rng(seed)
  macs = np.sort(rng.choice(np.arange(1, 100), 6, replace=False)).astype(float) * 1e5
  curve = list(zip(macs, rng.uniform(0.5, 0.9, 6)))
  grid, acc = brute_force(curve)
  for target in np.linspace(macs[0], macs[-1], 7):
    chex.assert_trees_all_close(paper_claim.accuracy_at(curve, target), np.interp(target, grid, acc), atol=1e-9)
  assert paper_claim.accuracy_at(curve, macs[0] - 1) is None and paper_claim.accuracy_at(curve, macs[-1] + 1) is None
  for level in np.linspace(0.5, 0.9, 9):
    reached = grid[acc >= level]
    expected = reached.min() if reached.size else None
    got = paper_claim.min_macs_at(curve, level)
    if expected is None:
      assert got is None
    else:
      chex.assert_trees_all_close(got, expected, atol=(macs[-1] - macs[0]) / 1e5)


def test_paper_claim_sweep_config_is_the_documented_grid(tmp_path):
  s = paper_claim_sweep.get_config()
  points = sweep_points.expand(s, str(tmp_path))
  energies = {dict(p.axes)["energy"] for p in points if p.command == "compress"}
  assert energies == set(paper_claim_sweep.ENERGIES) and len(energies) >= 5
  assert {p.seed for p in points} == {0, 1}
  trained = [sweep_points.parse_point(p) for p in points if p.command == "train"]
  assert all(c.num_epochs >= 15 and c.train_subset in (None, -1) for c in trained)


@pytest.mark.skipif(not os.path.exists(CSV), reason="docs/figures/paper_claim.csv is written by the sweep")
def test_results_md_tables_are_recomputed_from_the_csv():
  rows = paper_claim.read_csv(CSV)
  svd = [r for r in rows if r["energy"] > 0]
  assert {r["train_examples"] for r in rows} == {60_000} and min(r["epochs"] for r in rows) >= 15
  assert len({r["energy"] for r in svd}) >= 5 and {r["seed"] for r in rows} == {0, 1}
  assert {r["sparsity"] > 0 for r in svd} == {True, False} and {r["finetune_epochs"] for r in svd} == {0, 1}
  with open(os.path.join(REPO, "docs", "results.md")) as f:
    results = f.read()
  for line in paper_claim.tables(rows).splitlines():
    assert line in results, line


def _report(*args):
  return subprocess.run([sys.executable, "-m", "experiments.sweeps.paper_claim", *args], cwd=REPO, check=False,
                        capture_output=True, text=True, timeout=120)


def test_report_command_usage_and_empty_root_are_one_line_errors(tmp_path):
  run = _report
  bad = run("only-one-arg")
  assert bad.returncode == 2 and bad.stderr.startswith("usage:")
  empty = run(str(tmp_path), str(tmp_path / "out"))
  assert empty.returncode == 1 and empty.stderr.strip().count("\n") == 0 and "no finished point" in empty.stderr
