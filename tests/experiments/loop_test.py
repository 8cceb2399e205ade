"""End to end: `python -m experiments.cifar_svd` on tiny Fashion-MNIST files in the real IDX format."""

import csv
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.run import loop
from jaxsvd import checkpoint
from jaxsvd.models import build_model
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "--config=experiments/configs/fashion_mnist.py"


def cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.cifar_svd", CONFIG, *args], cwd=REPO,
                        capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")))


def test_full_loop_interrupted_then_resumed_by_cli(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  # 8 steps/epoch and a gentle final prune: enough to learn the bands (measured 0.55-0.75 test accuracy over seeds;
  # with 3 steps/epoch and final energy 0.3 the same run stays at chance, 0.08-0.22).
  overrides = {"plots": True, "tensorboard": True, "max_steps_per_epoch": 8, "final_prune.energy": 0.05}
  assert loop.run(helpers.tiny_config(data_dir, **overrides), workdir, stop_after_epoch=2) is None
  proc = cli(f"--workdir={workdir}", *helpers.cli_flags(data_dir, **overrides))
  assert proc.returncode == 0, proc.stderr[-3000:]
  log = proc.stdout + proc.stderr
  assert "resumed from" in log and "final prune after epoch 3" in log and "recompiled for the new architecture" in log

  rows = list(csv.DictReader(open(os.path.join(workdir, "metrics.csv"))))
  assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
  assert int(rows[-1]["total_rank"]) < int(rows[0]["total_rank"])
  assert rows[-1]["finetune"] == "1" and rows[0]["finetune"] == "0"
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert summary["svd_params_after"] < summary["svd_params_before"]
  assert summary["test_accuracy"] >= 0.35  # 10 classes: chance is 0.1
  for png in ("loss.png", "accuracy.png", "compression.png", "layer_ranks.png", "spectra.png"):
    assert os.path.getsize(os.path.join(workdir, png)) > 1000
  assert os.listdir(os.path.join(workdir, "tensorboard"))

  # The merged (dense) export reproduces the final SVD model.
  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  x = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype(np.float32)
  expected = restored.model.apply(restored.variables, x, train=False)
  dense = build_model("resnet8", 10, None)
  template = jax.eval_shape(dense.init, jax.random.key(0), x[:1])
  with ocp.StandardCheckpointer() as ckptr:
    merged = ckptr.restore(os.path.join(workdir, "final_params", "merged"), template)
  chex.assert_trees_all_close(dense.apply(merged, x, train=False), expected, atol=1e-4, rtol=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
  # The multistep factor blows the LR up to 1e12 halfway: epochs 1-2 are fine, epoch 3 diverges.
  c = helpers.tiny_config(data_dir, **{"pruning.enabled": False})
  c.optimizer.update(optimizer="sgd", learning_rate=0.01, schedule="multistep", milestones=(0.5,), decay_factor=1e14)
  with pytest.raises(FloatingPointError, match=r"the last good checkpoint is step 6 \(epoch 2\)"):
    loop.run(c, str(tmp_path))
  restored = checkpoint.restore(os.path.join(tmp_path, "checkpoints"))
  assert restored.meta["epoch"] == 2
  chex.assert_tree_all_finite(restored.variables)


CONFIGS = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "experiments", "configs"))
                 if f.endswith(".py") and f not in ("__init__.py", "default.py"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_validates(name):
  """Each config file builds a plan (and pruning-from-scratch configs pass their own checks) before any compile."""
  import importlib

  from experiments import pruning_from_scratch
  from experiments.run import plan
  c = importlib.import_module(f"experiments.configs.{name}").get_config()
  events = plan.make_plan(c).events
  if "from_scratch" in name:
    pruning_from_scratch.validate(c)
  expected = (["online prune"] if c.svd.enabled and c.pruning.enabled else []) + (
      ["final prune"] if c.svd.enabled and c.final_prune.enabled else []) + (["slimming"] if c.slimming.enabled else [])
  expected += ["masks"] if c.masks.enabled else []
  assert [e.name for e in events] == expected
