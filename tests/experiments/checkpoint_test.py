"""Checkpoints of real runs: restore in a fresh process (full rank and pruned), resume bit-identical to a straight
run, and runs written in format 1 resume under today's loop."""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from experiments.run import loop
from jaxsvd import checkpoint
from jaxsvd.core.tree import get_node
from jaxsvd.deploy.inference import load_for_inference
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run that pruned (online at epochs 2-3, final at 3), with checkpoints at full and pruned ranks."""
  root = tmp_path_factory.mktemp("ckpt")
  data_dir = helpers.write_fashion_mnist(str(root / "data"))
  c = helpers.tiny_config(data_dir)
  c.checkpoint.max_to_keep = 10
  workdir = str(root / "run")
  loop.run(c, workdir)
  return c, workdir, data_dir


def _restore_outputs_in_subprocess(path, step, x_path, out_path):
  code = textwrap.dedent(f"""
      import numpy as np
      from jaxsvd.deploy.inference import load_for_inference
      apply, architecture = load_for_inference({path!r}, {step})
      np.save({out_path!r}, np.asarray(apply(np.load({x_path!r}))))
      print(architecture.ranks)
  """)
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return np.load(out_path)


def test_full_rank_and_pruned_checkpoints_restore_in_fresh_process(trained, tmp_path):
  _, workdir, _ = trained
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  first, last = steps[0], steps[-1]
  x = np.random.default_rng(0).normal(size=(5, 28, 28, 1)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  for step in (first, last):
    apply, _ = load_for_inference(ckpt_dir, step)  # same jitted program as the subprocess
    expected = apply(x)
    got = _restore_outputs_in_subprocess(ckpt_dir, step, str(tmp_path / "x.npy"), str(tmp_path / f"{step}.npy"))
    np.testing.assert_array_equal(got, np.asarray(expected))
  full, pruned = checkpoint.read_architecture(ckpt_dir, first), checkpoint.read_architecture(ckpt_dir, last)
  assert sum(pruned.ranks.values()) < sum(full.ranks.values())
  assert full.ranks == full.original_ranks == pruned.original_ranks


def test_resume_is_bit_identical(trained, tmp_path):
  c, workdir, data_dir = trained
  resumed = str(tmp_path / "resumed")
  assert loop.run(c, resumed, stop_after_epoch=3) is None  # killed after the first pruning event
  assert checkpoint.read_meta(os.path.join(resumed, "checkpoints"), 3 * 3)["epoch"] == 3
  loop.run(c, resumed)
  a = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  b = checkpoint.restore(os.path.join(resumed, "checkpoints"))
  assert a.architecture == b.architecture and a.step == b.step
  chex.assert_trees_all_equal(a.variables, b.variables)
  ta = checkpoint.restore_train(a.directory, a.step, _abstract_opt_state(a.directory, a.step))
  tb = checkpoint.restore_train(b.directory, b.step, _abstract_opt_state(b.directory, b.step))
  chex.assert_trees_all_equal(jax.random.key_data(ta["rng"]), jax.random.key_data(tb["rng"]))
  chex.assert_trees_all_equal(ta["opt_state"], tb["opt_state"])


def _abstract_opt_state(directory, step):
  """Abstract optimizer state rebuilt from the checkpoint's own config (as resume does)."""
  from ml_collections import ConfigDict

  from jaxsvd.training import optim
  meta = checkpoint.read_meta(directory, step)
  restored = checkpoint.restore(directory, step)
  cfg = ConfigDict(meta["config"])
  tx = optim.make_optimizer(cfg.optimizer, restored.variables["params"], cfg.max_steps_per_epoch, cfg.num_epochs)
  return jax.eval_shape(tx.init, restored.variables["params"])


def test_a_format_1_run_resumes_and_continues(tmp_path):
  """The v1 fixture (4 of 4 epochs, written before the redesign) continues for a 5th epoch under today's loop."""
  import shutil
  fixture = os.path.join(REPO, "tests", "fixtures", "format_v1", "svd_pruned")
  workdir = tmp_path / "run"
  shutil.copytree(fixture, workdir / "checkpoints")
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"))  # the data the fixture was trained on
  c = helpers.tiny_config(data_dir, num_epochs=5)
  before = checkpoint.restore(str(workdir / "checkpoints"))
  summary = loop.run(c, str(workdir))
  after = checkpoint.restore(str(workdir / "checkpoints"))
  assert after.meta["format_version"] == 2 and after.meta["epoch"] == 5 and summary["epochs"] == 5
  assert [h["epoch"] for h in after.meta["history"]] == [1, 2, 3, 4, 5]
  assert after.architecture.ranks == before.architecture.ranks  # epoch 5 is fine-tuning: no pruning
  assert after.step == before.step + 3  # 3 more steps, from the restored optimizer state


def test_a_format_1_slimmed_run_resumes_with_its_channels_held_at_zero(tmp_path):
  """Format 1 masked slimmed channels; resuming rebuilds that optimizer (keep_pruned) from the record alone, even
  with slimming off in the resuming config."""
  import shutil
  workdir = tmp_path / "run"
  shutil.copytree(os.path.join(REPO, "tests", "fixtures", "format_v1", "slimmed"), workdir / "checkpoints")
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"))
  c = helpers.tiny_config(data_dir, num_epochs=4, finetune_epochs=0, **{
      "svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False, "optimizer.bn_l1": 1e-4})
  summary = loop.run(c, str(workdir))
  after = checkpoint.restore(str(workdir / "checkpoints"))
  masked = after.architecture.masked_channels
  assert after.meta["epoch"] == 4 and summary["bn_channels_before"] - summary["bn_channels_after"] == sum(
      len(v) for v in masked.values()) > 0
  for path, channels in masked.items():  # one more epoch of Adam later, still exactly zero
    node = get_node(after.variables["params"], path)
    assert (np.asarray(node["scale"])[channels] == 0).all() and (np.asarray(node["bias"])[channels] == 0).all()


def test_resuming_with_another_model_or_svd_spec_is_a_one_line_error(tmp_path):
  import shutil
  shutil.copytree(os.path.join(REPO, "tests", "fixtures", "format_v1", "svd_pruned"), tmp_path / "checkpoints")
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"))
  for overrides in ({"model": "resnet20"}, {"svd.decomposition": "spatial"}, {"svd.dense_first": False}):
    with pytest.raises(ValueError, match="the workdir holds a run of") as err:
      loop.run(helpers.tiny_config(data_dir, num_epochs=5, **overrides), str(tmp_path))
    assert "\n" not in str(err.value)
