"""Checkpoints written before the redesign (format version 1) restore with today's code, to the same outputs."""

import json
import os
import shutil

import flax
import numpy as np
import pytest
from flax import nnx

from jaxsvd import checkpoint
from jaxsvd.core.record import FORMAT_VERSION
from jaxsvd.deploy.inference import load_for_inference
from jaxsvd.nnx import layers as nnx_layers
from tests import user_models
from tests.nnx.svdify_test import CNN as NNXCNN

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "format_v1")


@pytest.mark.parametrize("name, step", [("svd_pruned", 12), ("slimmed", 9)])
def test_version_1_checkpoint_restores_to_the_logits_its_writer_computed(name, step):
  restored = checkpoint.restore(os.path.join(FIXTURES, name))
  assert restored.step == step and restored.meta["format_version"] == 1
  x = np.load(os.path.join(FIXTURES, "x.npy"))
  expected = np.load(os.path.join(FIXTURES, f"{name}_logits.npy"))
  got = restored.model.apply(restored.variables, x, train=False)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
  record = restored.architecture
  assert record.model == "resnet8" and record.input_shape == (28, 28, 1)
  if name == "svd_pruned":
    assert sum(record.ranks.values()) < sum(record.original_ranks.values()) and record.masked_channels is None
  else:
    assert record.svd is None and sum(len(v) for v in record.masked_channels.values()) > 0
    assert record.pruned_channels is None  # format 1 masked channels; it never removed them
  assert record.to_json()["format_version"] == FORMAT_VERSION  # re-saved records are version 2


def test_version_1_loads_for_inference():
  apply, record = load_for_inference(os.path.join(FIXTURES, "svd_pruned"))
  x = np.load(os.path.join(FIXTURES, "x.npy"))
  np.testing.assert_allclose(np.asarray(apply(x)), np.load(os.path.join(FIXTURES, "svd_pruned_logits.npy")),
                             rtol=1e-5, atol=1e-5)


def test_future_version_is_a_one_line_error_naming_it(tmp_path):
  shutil.copytree(os.path.join(FIXTURES, "svd_pruned"), tmp_path / "ck")
  meta_file = tmp_path / "ck" / "12" / "meta" / "metadata"
  json.dump({**json.load(open(meta_file)), "format_version": 0}, open(meta_file, "w"))
  with pytest.raises(checkpoint.CheckpointError, match=r"format_version=0; this jaxsvd reads versions \(1, 2\)"):
    checkpoint.restore(str(tmp_path / "ck"))


V020 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "v0_2_0")  # make_v020.py wrote them


def _v020_model(name):
  if name == "linen":
    return user_models.CNN(num_classes=4)
  if name == "nnx":
    return lambda: NNXCNN(rngs=nnx.Rngs(7))
  return None


OLD_FLAX = tuple(int(p) for p in flax.__version__.split(".")[:2]) < nnx_layers.MIN_FLAX  # .ci/minimums: no NNX


@pytest.mark.parametrize("name, step", [("zoo", 12), ("linen", 0), pytest.param(
    "nnx", 3, marks=pytest.mark.skipif(OLD_FLAX, reason="jaxsvd's NNX support needs flax >= 0.12"))])
def test_checkpoints_written_by_0_2_0_restore_to_their_writers_logits(name, step):
  """jaxsvd 0.2.0 (the flat layout) wrote these; 0.3.0 moved every module, and the format stores no module path."""
  restored = checkpoint.restore(os.path.join(V020, name), model=_v020_model(name))
  assert restored.step == step and restored.meta["library_version"] == "0.2.0"
  x = np.load(os.path.join(V020, "x.npy"))
  if name == "nnx":
    restored.model.eval()
    got = restored.model(x)
  else:
    got = restored.model.apply(restored.variables, x, **({} if name == "linen" else {"train": False}))
  np.testing.assert_allclose(np.asarray(got), np.load(os.path.join(V020, f"{name}_logits.npy")), rtol=1e-5, atol=1e-5)
  assert sum(restored.architecture.ranks.values()) < sum(restored.architecture.original_ranks.values()) or (
      name == "linen")  # the linen model was pruned before its record was taken: its record starts there


V031 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "v0_3_1")  # make_v031.py wrote them


def _v031_model(name):
  return {"linen": user_models.CNN(num_classes=4), "linen_lm": user_models.TransformerLM(),
          "nnx": lambda: NNXCNN(rngs=nnx.Rngs(7))}.get(name)


@pytest.mark.parametrize("name, step", [("zoo", 12), ("linen", 0), ("linen_lm", 0), pytest.param(
    "nnx", 3, marks=pytest.mark.skipif(OLD_FLAX, reason="jaxsvd's NNX support needs flax >= 0.12"))])
def test_checkpoints_written_by_0_3_1_restore_to_their_writers_logits(name, step):
  """jaxsvd 0.3.1 (flat experiments/ and tests/) wrote these; the checkpoint stores no module path of either."""
  restored = checkpoint.restore(os.path.join(V031, name), model=_v031_model(name))
  assert restored.step == step and restored.meta["library_version"] == "0.3.1"
  sample = np.load(os.path.join(V031, "tokens.npy" if name == "linen_lm" else "x.npy"))
  if name == "nnx":
    restored.model.eval()
    got = restored.model(sample)
  else:
    got = restored.model.apply(restored.variables, sample, **({"train": False} if name == "zoo" else {}))
  np.testing.assert_allclose(np.asarray(got), np.load(os.path.join(V031, f"{name}_logits.npy")), rtol=1e-5, atol=1e-5)
  assert sum(restored.architecture.ranks.values()) <= sum(restored.architecture.original_ranks.values())
  if name in ("zoo", "nnx"):
    assert sum(restored.architecture.ranks.values()) < sum(restored.architecture.original_ranks.values())
