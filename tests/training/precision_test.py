"""bf16 mixed precision (``compute_dtype``): convs and matmuls in bfloat16 with float32 sums; params, optimizer
state, BN statistics, loss and regularizers in float32; the compiled program really runs bf16 convs."""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.run import plan as plan_lib
from jaxsvd.core.record import Architecture
from jaxsvd.linen.svdifylib import svdify
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.nnx.layers import ConvSVD, LinearSVD
from jaxsvd.training import TrainState, train_step
from jaxsvd.training.losses import RegularizerConfig, make_loss_fn
from tests import helpers

pytestmark = pytest.mark.gpu  # bf16 steps: ``benchmarks/gpu_check.sh`` runs them on the accelerator

STEPS = 30
REG = RegularizerConfig(orthogonality=1.0, sparsity=0.003)
SPEC = SVDSpec(dense_last=False)  # every conv but the stem and the classifier in SVD form


def _batches(n_steps, batch=32, shape=(16, 16, 3)):
  images, labels = helpers.learnable_images(n_steps * batch, shape, 10, seed=0)
  images = (images.astype(np.float32) / 255.0 - 0.3).reshape(n_steps, batch, *shape)
  return jnp.asarray(images), jnp.asarray(labels.astype(np.int32).reshape(n_steps, batch))


def _train(compute_dtype, mode="auto"):
  """30 Adam steps of ResNet-8 (SVD) from one init: (state, per-step losses, per-step metrics)."""
  model = build_model("resnet8", 10, SPEC.with_mode(mode), compute_dtype=compute_dtype)
  images, labels = _batches(STEPS)
  variables = jax.jit(build_model("resnet8", 10, SPEC).init)(jax.random.key(0), images[0])
  state = TrainState.create(model.apply, variables, optax.adam(1e-3))

  def body(state, batch):
    state, metrics = train_step(state, {"image": batch[0], "label": batch[1]}, REG)
    return state, metrics

  state, metrics = jax.jit(lambda s: jax.lax.scan(body, s, (images, labels)))(state)
  return state, metrics


@pytest.fixture(scope="module")
def runs():
  return {dtype: _train(dtype) for dtype in ("float32", "bfloat16")}


def test_bf16_training_tracks_float32(runs):
  (_, m32), (_, m16) = runs["float32"], runs["bfloat16"]
  loss32, loss16 = np.asarray(m32["loss"]), np.asarray(m16["loss"])
  # bf16 keeps 8 mantissa bits: each operand is rounded by at most 2^-9 ≈ 0.2 % relative. Products are summed in
  # float32, so a layer's output carries about that relative error (random-signed roundings partly cancel); 8 layers
  # and 30 Adam steps (whose normalized updates pass the gradient's direction on) compound it to < 1 %: measured, a
  # largest per-step gap of 0.8 % and 0.3 % at step 30 (loss 2.86 → 0.24). 2 % leaves a 2.5x margin; a model that
  # computed in a wrong dtype or dropped a loss term misses it by far (the loss falls by > 90 % over these steps).
  chex.assert_trees_all_close(loss16, loss32, rtol=0.02)
  assert loss32[-1] < 0.7 * loss32[0] and loss16[-1] < 0.7 * loss16[0]


def test_params_optimizer_state_and_batch_stats_stay_float32(runs):
  state, metrics = runs["bfloat16"]
  for tree in (state.params, state.opt_state, state.model_state, metrics):
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats
    chex.assert_type(floats, jnp.float32)


def test_regularizers_and_loss_equal_float32s_at_the_same_params(runs):
  """The orthogonality and sparsity terms read only float32 params: bit-identical in both precisions."""
  state, _ = runs["bfloat16"]
  images, labels = _batches(1)
  batch = {"image": images[0], "label": labels[0]}
  out = {}
  for dtype in ("float32", "bfloat16"):
    model = build_model("resnet8", 10, SPEC, compute_dtype=dtype)
    loss_fn = make_loss_fn(model.apply, REG, train=False)
    loss, (metrics, _) = jax.jit(loss_fn)(state.params, state.model_state, batch)
    out[dtype] = (loss, metrics)
  chex.assert_type([out["bfloat16"][0], out["bfloat16"][1]["ce"]], jnp.float32)
  for term in ("orth", "sparsity"):
    chex.assert_trees_all_equal(out["bfloat16"][1][term], out["float32"][1][term])
  chex.assert_trees_all_close(out["bfloat16"][1]["ce"], out["float32"][1]["ce"], rtol=0.02)


def _conv_and_dot_types(lowered_text):
  """(op, operand element types, result element type) of every convolution / dot_general in StableHLO text."""
  found = []
  for line in lowered_text.splitlines():
    op = re.search(r"stablehlo\.(convolution|dot_general)", line)
    if op:
      sig = re.search(r":\s*\((.*)\)\s*->\s*(.*)$", line)
      operands = tuple(re.findall(r"(bf16|f32)>", sig.group(1)))
      found.append((op.group(1), operands, re.findall(r"(bf16|f32)>", sig.group(2))[0]))
  return found


@pytest.mark.parametrize("mode", ["reconstruct", "factored"])
@pytest.mark.parametrize("svd", [True, False])
def test_compiled_program_runs_bf16_convs_with_float32_sums(mode, svd):
  """Every conv runs on bf16 operands and returns its float32 sums; so does the classifier's matmul. In
  reconstruct mode the only float32 dots are the kernel rebuilds U·diag(s)·Vᵀ (weights only, then cast once)."""
  spec = SVDSpec(mode=mode, dense_last=False) if svd else None
  x = jnp.zeros((2, 16, 16, 3))
  variables = jax.eval_shape(build_model("resnet8", 10, spec).init, jax.random.key(0), x)
  types = {}
  for dtype in ("float32", "bfloat16"):
    model = build_model("resnet8", 10, spec, compute_dtype=dtype)
    types[dtype] = _conv_and_dot_types(jax.jit(model.apply).lower(variables, x).as_text())
  assert types["float32"] and all(t[1:] == (("f32", "f32"), "f32") for t in types["float32"])
  convs = {d: [t for t in types[d] if t[0] == "convolution"] for d in types}
  assert len(convs["bfloat16"]) == len(convs["float32"]) >= 7  # ResNet-8: stem + 6 block convs (+ factored)
  assert all(t[1:] == (("bf16", "bf16"), "f32") for t in convs["bfloat16"])
  dots = [t for t in types["bfloat16"] if t[0] == "dot_general"]
  assert any(t[1:] == (("bf16", "bf16"), "f32") for t in dots)  # the classifier (and factored 1×1 products)
  rebuilds = [t for t in dots if t[1] == ("f32", "f32")]
  assert len(rebuilds) == (7 if svd and mode == "reconstruct" else 0)  # the SVD convs' and classifier's kernels


def test_nnx_layers_compute_in_bf16_and_return_their_dtype():
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 16))
  for make in (lambda d: ConvSVD(16, 32, 3, rank=8, mode="factored", dtype=d, rngs=nnx.Rngs(0)),
               lambda d: LinearSVD(16, 32, rank=8, mode="reconstruct", dtype=d, rngs=nnx.Rngs(0))):
    f32, bf16 = make(None), make(jnp.bfloat16)
    chex.assert_type([bf16.U[...], bf16.s[...], bf16.V[...]], jnp.float32)
    y32, y16 = f32(x), bf16(x)
    chex.assert_type(y16, jnp.bfloat16)
    # one bf16 rounding of each operand and of the output: a few 2^-9 relative, against the output's scale
    chex.assert_trees_all_close(y16.astype(jnp.float32), y32, atol=0.03 * float(jnp.abs(y32).max()))


class _Bf16Net(nn.Module):
  """flax's mixed-precision convention on every layer: bf16 compute, float32 params."""
  dtype: object = jnp.bfloat16

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (3, 3), dtype=self.dtype, param_dtype=jnp.float32)(x))
    return nn.Dense(10, dtype=self.dtype, param_dtype=jnp.float32)(x.mean((1, 2)))


@pytest.mark.parametrize("mode", ["reconstruct", "factored"])
def test_linen_svdify_keeps_each_layers_dtype_convention(mode):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  bf16, f32 = svdify(_Bf16Net(), mode=mode), svdify(_Bf16Net(dtype=None), mode=mode)
  params = f32.init(jax.random.key(0), x)["params"]
  chex.assert_type(jax.tree.leaves(bf16.init(jax.random.key(0), x)), jnp.float32)  # U, s, V, biases
  y16, y32 = bf16.apply({"params": params}, x), f32.apply({"params": params}, x)
  chex.assert_type(y16, jnp.bfloat16)  # the output dtype of the layers it replaced
  chex.assert_trees_all_close(y16.astype(jnp.float32), y32, atol=0.03 * float(jnp.abs(y32).max()))
  text = jax.jit(bf16.apply).lower({"params": params}, x).as_text()
  assert any(t[0] == "convolution" and t[1:] == (("bf16", "bf16"), "f32") for t in _conv_and_dot_types(text))


def test_compute_dtype_is_validated_and_recorded():
  with pytest.raises(ValueError, match="compute_dtype"):
    build_model("resnet8", compute_dtype="float16")
  arch = Architecture("resnet8", 10, (16, 16, 3), compute_dtype="bfloat16")
  assert Architecture.from_json(arch.to_json()) == arch
  old = {k: v for k, v in arch.to_json().items() if k != "compute_dtype"}  # records before the field
  assert Architecture.from_json(old).compute_dtype == "float32"
  assert arch.build_model().compute_dtype == "bfloat16"
  with pytest.raises(ValueError, match="compute_dtype"):
    Architecture("resnet8", 10, (16, 16, 3), compute_dtype="fp16")


def test_config_compute_dtype_is_a_one_line_error_before_compile(tmp_path):
  c = helpers.tiny_config(str(tmp_path), compute_dtype="half")
  with pytest.raises(ValueError, match=r"^compute_dtype") as err:
    plan_lib.make_plan(c)
  assert "\n" not in str(err.value)
