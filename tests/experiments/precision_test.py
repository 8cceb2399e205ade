"""A bf16 experiment run (``compute_dtype='bfloat16'``): it prunes, checkpoints with its precision in the record,
resumes bit-identically, restores for inference and exports a deploy artifact."""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export
from experiments.run import loop
from jaxsvd import checkpoint
from jaxsvd.deploy.inference import load_for_inference
from tests import helpers

pytestmark = pytest.mark.gpu  # bf16 steps: ``benchmarks/gpu_check.sh`` runs them on the accelerator


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
  """A bf16 run of 3 epochs that prunes online (epoch 2) and at the end; every checkpoint kept."""
  root = tmp_path_factory.mktemp("bf16")
  data_dir = helpers.write_fashion_mnist(str(root / "data"))
  c = helpers.tiny_config(data_dir, compute_dtype="bfloat16", num_epochs=3)
  c.checkpoint.max_to_keep = 10
  workdir = str(root / "run")
  loop.run(c, workdir)
  return c, workdir


def test_bf16_run_prunes_and_records_its_precision(bf16_run):
  _, workdir = bf16_run
  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  arch = restored.architecture
  assert arch.compute_dtype == "bfloat16" and restored.model.compute_dtype == "bfloat16"
  assert sum(arch.ranks.values()) < sum(arch.original_ranks.values())
  floats = [x for x in jax.tree.leaves(restored.variables) if jnp.issubdtype(x.dtype, jnp.floating)]
  chex.assert_type(floats, jnp.float32)


def test_bf16_run_resumes_bit_identically(bf16_run, tmp_path):
  c, workdir = bf16_run
  resumed = str(tmp_path / "resumed")
  assert loop.run(c, resumed, stop_after_epoch=2) is None  # stopped after the online pruning event
  loop.run(c, resumed)
  a = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  b = checkpoint.restore(os.path.join(resumed, "checkpoints"))
  assert a.architecture == b.architecture and a.step == b.step
  chex.assert_trees_all_equal(a.variables, b.variables)


def test_bf16_checkpoint_restores_for_inference_and_exports(bf16_run, tmp_path):
  _, workdir = bf16_run
  apply, arch = load_for_inference(os.path.join(workdir, "checkpoints"))
  x = np.random.default_rng(0).normal(size=(4, *arch.input_shape)).astype(np.float32)
  logits = apply(x)
  chex.assert_shape(logits, (4, 10))
  chex.assert_tree_all_finite(logits)
  info = export.export_run(workdir, str(tmp_path / "deploy"), batch=4, platforms=("cpu",))
  # the artifact runs the folded model in float32; the bf16 eval differs by bf16 rounding only
  assert info["max_abs_diff_vs_eval"] < 0.05 * float(np.max(np.abs(np.asarray(logits)))) + 1e-3
