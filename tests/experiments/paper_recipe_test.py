"""The four-stage recipe: init_from, the prune stage, fine-tuning, resume, restore in a fresh process; the paper
config table."""

import json
import os
import subprocess
import sys

import chex
from tests import helpers
import pytest

from experiments import paper_recipe
from experiments.configs import paper
from jaxsvd import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_recipe(data_dir):
  from experiments.configs import fashion_mnist_recipe
  c = fashion_mnist_recipe.get_config()
  c.update(data_dir=data_dir, num_epochs=1, batch_size=32, eval_batch_size=64, max_steps_per_epoch=3,
           progress_bar=False, plots=False, tensorboard=False)
  c.checkpoint.async_save = False
  c.final_prune.energy = 0.2
  return c


def restore_in_fresh_process(workdir):
  code = ("import json, sys; from jaxsvd import checkpoint; r = checkpoint.restore(sys.argv[1]); "
          "print(json.dumps({'ranks': r.architecture.ranks, 'sigma': r.architecture.svd.sigma}))")
  out = subprocess.run([sys.executable, "-c", code, os.path.join(workdir, "checkpoints")], capture_output=True,
                       text=True, check=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_stages_run_end_to_end_resume_and_restore_in_a_fresh_process(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"), n_train=128, n_test=64)
  root = str(tmp_path / "recipe")
  results = paper_recipe.run_recipe(tiny_recipe(data_dir), root)
  assert list(results) == list(paper.STAGES)
  def read(stage):
    return checkpoint.read_architecture(*checkpoint.resolve(os.path.join(root, stage, "checkpoints")))

  pretrain, regularize, pruned, finetune = (read(s) for s in paper.STAGES)
  assert regularize.ranks == pretrain.ranks == regularize.original_ranks  # started from pretrain, not pruned
  assert sum(pruned.ranks.values()) < sum(regularize.ranks.values())  # the prune stage pruned...
  assert results["prune"]["ranks"] == pruned.ranks == finetune.ranks  # ...and fine-tuning kept its ranks
  assert finetune.original_ranks == pretrain.ranks and finetune.svd.sigma == "abs"
  with open(os.path.join(root, "finetune", "metrics.csv")) as f:
    rows = f.read().splitlines()
  assert results["finetune"]["epochs"] == 1 and len(rows) == 2  # a fresh run from epoch 0 (header + 1 epoch)
  # an interrupted stage: the fine-tune summary is gone; the driver resumes from its checkpoint, trains nothing more
  os.remove(os.path.join(root, "finetune", "summary.json"))
  again = paper_recipe.run_recipe(tiny_recipe(data_dir), root)
  chex.assert_trees_all_close(again["finetune"]["test_accuracy"], results["finetune"]["test_accuracy"])
  with open(os.path.join(root, "finetune", "metrics.csv")) as f:
    assert f.read().splitlines() == rows
  assert restore_in_fresh_process(os.path.join(root, "finetune")) == {"ranks": pruned.ranks, "sigma": "abs"}


def test_init_from_another_architecture_is_a_one_line_error(tmp_path):
  import shutil

  from experiments.run import loop
  shutil.copytree(os.path.join(REPO, "tests", "fixtures", "format_v1", "svd_pruned"), tmp_path / "src" / "checkpoints")
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"), n_train=64, n_test=32)
  c = helpers.tiny_config(data_dir, init_from=str(tmp_path / "src"), **{"svd.decomposition": "spatial"})
  with pytest.raises(ValueError, match="init_from=.* holds a run of") as err:
    loop.run(c, str(tmp_path / "run"))
  assert "\n" not in str(err.value)


def test_stage_configs_follow_the_recipe():
  c = paper.get_config("resnet20,channel,hoyer")
  pre, reg, prune, fine = (paper.stage_config(c, s, "/r") for s in paper.STAGES)
  assert (pre.reg.sparsity, reg.reg.sparsity, fine.reg.sparsity) == (0.0, 0.1, 0.0)
  assert (pre.init_from, reg.init_from, prune.init_from, fine.init_from) == (None, "/r/pretrain", "/r/regularize",
                                                                           "/r/prune")
  assert [x.final_prune.enabled for x in (pre, reg, prune, fine)] == [False, False, True, False]
  assert not any(x.pruning.enabled for x in (pre, reg, prune, fine))


@pytest.mark.parametrize("row", sorted(paper.CIFAR10))
def test_every_official_cifar10_row_has_a_valid_config_per_stage(row):
  from experiments.run import plan
  depth, decomposition, sparsity = row
  lam_cmd, lam, (rule, value) = paper.CIFAR10[row]
  for stage in paper.STAGES:
    c = paper.get_config(f"resnet{depth},{decomposition},{sparsity},{stage}")
    plan.make_plan(c)
    assert (c.model, c.svd.decomposition, c.reg.sparsity_type) == (f"resnet{depth}", decomposition, sparsity)
    assert (c.batch_size, c.num_epochs, tuple(c.optimizer.milestone_epochs)) == (100, 164, (81, 122))
    assert c.svd.sigma == "abs" and c.svd.init == "official" and not c.svd.dense_first
    assert c.model_options["block"] == ("bottleneck" if depth >= 44 else "basic")
  assert paper.get_config(f"resnet{depth},{decomposition},{sparsity},regularize").reg.sparsity == lam
  prune = paper.get_config(f"resnet{depth},{decomposition},{sparsity},prune").final_prune
  assert prune.strategy == rule and (prune.energy if rule == "energy" else prune.threshold) == value


def test_paper_table_values_from_the_official_notes():
  # spot checks against ../shared/official_recipes.md (command λs, λs of the directory that was pruned, rule)
  assert paper.CIFAR10[(20, "channel", "hoyer")] == (0.07, 0.1, ("energy", 3e-6))
  assert paper.CIFAR10[(20, "spatial", "hoyer_square")] == (1e-2, 1e-2, ("threshold", 0.1))
  assert paper.CIFAR10[(110, "spatial", "l1")] == (0.3, 0.03, ("energy", 5e-2))
  c = paper.get_config("resnet50,channel,hoyer")
  assert (c.optimizer.optimizer, c.optimizer.learning_rate, c.optimizer.weight_decay, c.batch_size) == (
      "sgd", 0.1, 1e-4, 256)
  assert (c.reg.orthogonality, c.final_prune.energy_rule, tuple(c.optimizer.milestone_epochs)) == (
      2.0, "official_imagenet", (31, 61))
  with pytest.raises(ValueError, match="no such row"):
    paper.get_config("resnet44,channel,hoyer")


def test_a_stage_is_done_only_when_its_summary_is_complete(tmp_path):
  """A prune stage killed between loop.finish's summary.json and the added 'ranks' is redone, not skipped."""
  path = tmp_path / "summary.json"
  assert not paper_recipe.stage_done(str(path))
  path.write_text(json.dumps({"test_accuracy": 0.8}))
  assert paper_recipe.stage_done(str(path)) and not paper_recipe.stage_done(str(path), "ranks")
  path.write_text(json.dumps({"test_accuracy": 0.8, "ranks": {"conv": 3}}))
  assert paper_recipe.stage_done(str(path), "ranks")
