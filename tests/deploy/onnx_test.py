"""The ONNX export: ONNX Runtime's outputs equal flax's own eval of the unfolded model (zoo, svdify'd user models,
merged and factored, two batch sizes through one dynamic-batch graph), the checker passes, the plan is measured in
ORT, and what cannot be exported is one line naming the primitive and the layer."""

import dataclasses
import os
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest

from benchmarks.lm_compression import LM
from jaxsvd import deploy, pruning
from jaxsvd.deploy.onnx import model as onnx_model
from jaxsvd.deploy.onnx import runner as onnx_runner
from jaxsvd.deploy.onnx import tune
from jaxsvd.linen.svdifylib import svdify
from jaxsvd.models import SVDSpec
from tests.deploy.artifact_test import UserNet, perturbed, pruned_zoo, tiny_resnet, tiny_vgg

CONTRACT = {"dtype": "uint8", "scale": 255.0, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25],
            "class_names": [f"c{i}" for i in range(10)], "shape": [12, 12, 3]}
IMAGES = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3)).astype(np.uint8)
TOL = {"atol": 2e-5, "rtol": 2e-5}


def normalized(images):  # the contract's arithmetic written out in NumPy
  mean, std = np.asarray(CONTRACT["mean"], np.float32), np.asarray(CONTRACT["std"], np.float32)
  return (images.astype(np.float32) / np.float32(255.0) - mean) / std


def ort(model, images):
  return tune.runner(tune.session(model, threads=1))(images)


@pytest.mark.parametrize("build", [tiny_resnet, tiny_vgg], ids=["resnet", "vgg"])
@pytest.mark.parametrize("svd", [None, SVDSpec("channel", dense_last=False), SVDSpec("spatial")],
                         ids=["dense", "channel", "spatial"])
def test_onnx_runtime_equals_flax_eval(build, svd):
  model, variables = pruned_zoo(build(svd), svd)
  x = normalized(IMAGES)
  expected = np.asarray(model.apply(variables, x, train=False))
  folded = deploy.fold(model, variables, x[:3], train=False)
  for rule in ("merged", "factored"):
    exported = onnx_model.to_onnx(folded, folded.plan(rule), CONTRACT)
    onnx.checker.check_model(exported, full_check=True)
    chex.assert_trees_all_close(ort(exported, IMAGES), expected, **TOL)  # traced at batch 3: the batch is dynamic
    chex.assert_trees_all_close(ort(exported, IMAGES[:1]), expected[:1], **TOL)


def test_graph_contract_dynamic_batch_and_metadata():
  model, variables = pruned_zoo(tiny_resnet(SVDSpec()), SVDSpec())
  folded = deploy.fold(model, variables, normalized(IMAGES), train=False)
  plan = folded.plan("auto")
  exported = onnx_model.to_onnx(folded, plan, CONTRACT, {"checkpoint_step": 7})
  (graph_input,), (graph_output,) = exported.graph.input, exported.graph.output
  assert graph_input.name == "images" and graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
  assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == ["batch", 12, 12, 3]
  assert [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim] == ["batch", 10]
  assert exported.opset_import[0].version == onnx_model.OPSET
  meta = onnx_model.metadata(exported)
  assert meta["input"] == CONTRACT and meta["class_names"] == CONTRACT["class_names"] and meta["plan"] == plan
  assert meta["macs_executed"] == folded.macs(plan) and meta["checkpoint_step"] == 7 and meta["jaxsvd_version"]
  assert {n.op_type for n in exported.graph.node} >= {"Cast", "Conv", "MatMul"}  # uint8 -> float32 inside
  assert not any(n.op_type == "BatchNormalization" for n in exported.graph.node)  # folded


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_svdify_user_model_with_a_kept_batchnorm(decomposition):
  svd_model = svdify(UserNet(), decomposition=decomposition)
  x = normalized(IMAGES)
  variables = svd_model.init(jax.random.key(0), x)
  params, new_ranks, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=0.4))
  svd_model, variables = svd_model.with_ranks(new_ranks), perturbed({**variables, "params": params})
  folded = deploy.fold(svd_model, variables, x)
  for rule in ("merged", "factored"):
    exported = onnx_model.to_onnx(folded, folded.plan(rule), None)  # no contract: normalized float32 in
    chex.assert_trees_all_close(ort(exported, x), np.asarray(svd_model.apply(variables, x)), **TOL)


def test_plan_measured_in_onnx_runtime():
  model, variables = pruned_zoo(tiny_vgg(SVDSpec()), SVDSpec())
  x = normalized(IMAGES)
  folded = deploy.fold(model, variables, x, train=False)
  plan, measured = tune.ort_plan(folded, batch=4, trials=1, threads=1)
  assert set(plan) == set(folded.sites) and set(plan.values()) <= {"merged", "factored"}
  for path, rank in measured.ranks().items():  # rounded to a multiple of 8 only where that was measured faster
    assert rank == folded.ranks()[path] or (rank % 8 == 0 and plan[path] == "factored")
  rounded = {p: tune.padded_rank(w, 8) if "s" in w else w for p, w in folded.layers.items()}
  padded = dataclasses.replace(folded, layers=rounded)
  assert all(r % 8 == 0 for r in padded.ranks().values())
  chex.assert_trees_all_close(ort(onnx_model.to_onnx(padded, padded.plan("factored"), CONTRACT), IMAGES),
                              np.asarray(model.apply(variables, x, train=False)), **TOL)  # zero directions: same
  rule, plan, exported = tune.autotune(folded, CONTRACT, IMAGES, trials=1, threads=1)
  assert rule in tune.CANDIDATES and onnx_model.metadata(exported)["plan"] == plan
  chex.assert_trees_all_close(ort(exported, IMAGES), np.asarray(model.apply(variables, x, train=False)), **TOL)


def test_a_transformer_language_model_exports():
  """Embedding lookup, causal mask broadcast to the batch, softmax, LayerNorm, GELU, einsum attention; svdify'd."""
  lm = svdify(LM(d=32, heads=2, layers=1, context=16), skip=("embed",))  # deploy.fold does not rewrite an SVD Embed
  tokens = np.random.default_rng(0).integers(0, 256, (3, 16)).astype(np.int32)
  variables = lm.init(jax.random.key(0), tokens)
  folded = deploy.fold(lm, variables, tokens)
  spec = jax.ShapeDtypeStruct((jax.export.symbolic_shape("batch")[0], 16), np.int32)
  for rule in ("merged", "factored"):
    weights = folded.weights(folded.plan(rule))
    exported = onnx_model.function_model(lambda t, w=weights: folded.apply(w, t), spec)
    chex.assert_trees_all_close(ort(exported, tokens[:2]), np.asarray(lm.apply(variables, tokens[:2])), **TOL)


class Transposed(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.ConvTranspose(4, (3, 3), strides=(2, 2), name="up")(x)


class Sorted(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.sort(nn.Dense(4, name="head")(x), axis=-1)


@pytest.mark.parametrize("module, message", [
    (Transposed(), r"^onnx export: conv_general_dilated \(in Transposed/up\): input dilation"),
    (Sorted(), r"^onnx export: primitive 'sort' \(in Sorted\) has no ONNX translation$")])
def test_what_cannot_be_exported_is_one_line_naming_primitive_and_layer(module, message):
  x = normalized(IMAGES)
  variables = module.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=message) as err:
    onnx_model.function_model(lambda images: module.apply(variables, images), onnx_model.input_spec((12, 12, 3), None))
  assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  model, variables = pruned_zoo(tiny_resnet(SVDSpec()), SVDSpec())
  folded = deploy.fold(model, variables, normalized(IMAGES), train=False)
  directory = tmp_path_factory.mktemp("onnx")
  path = onnx_model.save(onnx_model.to_onnx(folded, folded.plan("auto"), CONTRACT), str(directory))
  return path, np.asarray(model.apply(variables, normalized(IMAGES), train=False))


def test_runner_takes_images_as_stored_and_refuses_wrong_input_in_one_line(saved):
  path, expected = saved
  predict = onnx_runner.load(os.path.dirname(path))
  chex.assert_trees_all_close(predict(IMAGES), expected, **TOL)
  gray = {**CONTRACT, "shape": [12, 12, 1]}
  for bad, shape, message in [
      (IMAGES.astype(np.float32), CONTRACT["shape"], "input: expected uint8 images of shape (batch, 12, 12, 3) as "
       "stored on disk, got float32 (this model normalizes inside: give the raw pixels)"),
      (IMAGES[:, :11], CONTRACT["shape"], "input: expected uint8 images of shape (batch, 12, 12, 3), got shape "
       "(5, 11, 12, 3)")]:
    with pytest.raises(ValueError) as err:
      onnx_runner.check_images(bad, "uint8", shape)
    assert str(err.value) == message
  assert onnx_runner.check_images(IMAGES[..., 0], "uint8", gray["shape"]).shape == (5, 12, 12, 1)
  with pytest.raises(ValueError, match="no ONNX model there"):
    onnx_runner.load(os.path.join(os.path.dirname(path), "missing.onnx"))


def test_runner_command_line_needs_only_onnxruntime_and_numpy(saved, tmp_path):
  path, expected = saved
  runner_file = str(tmp_path / "onnx_runner.py")
  with open(onnx_runner.__file__) as src, open(runner_file, "w") as dst:
    dst.write(src.read())
  np.save(tmp_path / "x.npy", IMAGES)
  np.save(tmp_path / "f.npy", IMAGES.astype(np.float32))
  probe = (f"import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_path({runner_file!r}, run_name='__main__')")
  for args, code, first in [([path, str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--threads=1"], 0, None),
                            ([path, str(tmp_path / "f.npy"), str(tmp_path / "z.npy")], 1, "error: input: expected uint8"),
                            ([str(tmp_path / "nope.onnx"), str(tmp_path / "x.npy"), "o.npy"], 1, "error: "),
                            ([], 2, onnx_runner.USAGE)]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", probe, "onnx_runner.py", *args],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert proc.returncode == code, proc.stderr[-2000:]
    assert not imported & {"jax", "flax", "jaxsvd", "onnx"}  # onnxruntime + numpy only
    if first is None:
      chex.assert_trees_all_close(np.load(tmp_path / "y.npy"), expected, **TOL)
    else:
      assert len(messages) == 1 and messages[0].startswith(first), proc.stderr[-2000:]
