"""A sweep of language-model points (command 'lm'): results.csv and results.md report perplexity and bits per byte
(no accuracy column), checked against each point's summary.json; the figures plot perplexity."""

from __future__ import annotations

import csv
import json
import math
import os

from experiments import sweep
from tests.experiments.language_model_test import write_texts

COMMON = ("lm.d_model=32", "lm.heads=2", "lm.layers=1", "lm.d_ff=64", "lm.context=32", "batch_size=8",
          "eval_batch_size=16", "test_subset=16", "test_fraction=0.25", "num_epochs=1", "max_steps_per_epoch=3",
          "finetune_epochs=0", "progress_bar=False", "plots=False", "tensorboard=False", "checkpoint.async_save=False")
SWEEP = '''
from experiments.configs.sweeps import method, sweep

def get_config():
  methods = {{"dense": method("stdlib_lm", "lm", overrides=("svd.enabled=False",)),
             "svd": method("stdlib_lm", "lm", overrides=("pruning.enabled=False", "final_prune.strategy=budget"),
                           budget="final_prune.macs_reduction")}}
  c = sweep(methods, budgets=(1.5,), seeds=(0,), common={common})
  c.latency.enabled = False
  return c
'''


def test_a_sweep_of_language_model_points_reports_perplexity(tmp_path):
  texts = write_texts(tmp_path / "texts")
  config = tmp_path / "lm_sweep.py"
  config.write_text(SWEEP.format(common=(f"text_dir={texts}", *COMMON)))
  root = str(tmp_path / "root")
  sweep.main(["sweep", f"--config={config}", f"--workdir={root}"])
  with open(os.path.join(root, "results.csv")) as f:
    rows = {r["point"]: r for r in csv.DictReader(f)}
  assert sorted(rows) == ["dense-s0", "svd-b1.5-s0"]
  for name, row in rows.items():
    with open(os.path.join(root, name, "summary.json")) as f:
      summary = json.load(f)
    assert math.isclose(float(row["test_perplexity"]), summary["test_perplexity"], rel_tol=1e-9)
    assert math.isclose(float(row["test_bits_per_byte"]), summary["test_bits_per_byte"], rel_tol=1e-9)
    assert row["test_accuracy"] == "" and int(row["nonzero_params"]) > 0
  assert int(rows["svd-b1.5-s0"]["macs"]) < int(rows["dense-s0"]["macs"])
  with open(os.path.join(root, "results.md")) as f:
    table = f.read()
  assert "| test perplexity | test bits/byte |" in table and "test accuracy" not in table
  assert "python -m experiments.lm_svd --config=stdlib_lm" in table
  with open(os.path.join(root, "results_macs.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
