"""Einsum attention (Gemma style) and subclassed layers in SVD form, linen and NNX, on user-style models; the
report lists every linear-like layer once. References: NumPy einsums of the dense kernels, NumPy's SVD, flax's own
dense layers."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.linen import decompose, svdify
from jaxsvd.nnx import svdifylib as svdify_nnx
from jaxsvd.nnx import view_layers
from jaxsvd.pruning import Strategy

D, N, H = 8, 2, 4
IDS = np.array([[1, 2, 3, 4, 5]], np.int32)


class ScaledEmbed(nnx.Embed):
  """Gemma-style embedding: the lookup scaled by √features."""

  def __call__(self, ids):
    return super().__call__(ids) * np.sqrt(self.features).astype(np.float32)


class WSConv(nnx.Conv):
  """Weight-standardized conv: standardizes the kernel param, then convolves."""

  def __call__(self, x):
    k = self.kernel[...]
    k = (k - k.mean(axis=(0, 1, 2))) / (k.std(axis=(0, 1, 2)) + 1e-5)
    y = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + self.bias[...]


class DeltaLinear(nnx.Linear):
  """Refused: its own param is applied in place of the kernel."""

  def __init__(self, *args, rngs, **kwargs):
    super().__init__(*args, rngs=rngs, **kwargs)
    self.delta = nnx.Param(jnp.ones((self.in_features, self.out_features)))

  def __call__(self, x):
    return x @ self.delta[...]


class Block(nnx.Module):
  """Einsum attention projections (q with a bias, a stacked per-head map, the output), an Embed subclass, a
  weight-standardized conv, a plain conv and dense, a ConvTranspose and a refused subclass."""

  def __init__(self, rngs):
    self.embed = ScaledEmbed(10, D, rngs=rngs)
    self.q = nnx.Einsum("BTD,DNH->BTNH", (D, N, H), (N, H), rngs=rngs)
    self.per_head = nnx.Einsum("BNTH,NHE->BNTE", (N, H, 3), rngs=rngs)
    self.out = nnx.Einsum("BTNH,NHD->BTD", (N, H, D), rngs=rngs)
    self.ws = WSConv(D, 4, (3, 3), rngs=rngs)
    self.conv = nnx.Conv(4, 4, (3, 3), rngs=rngs)
    self.up = nnx.ConvTranspose(4, 4, (2, 2), rngs=rngs)
    self.dense = nnx.Linear(D, 3, rngs=rngs)
    self.delta = DeltaLinear(D, 3, rngs=rngs)

  def __call__(self, ids):
    x = self.embed(ids)
    q = self.q(x)
    y = self.out(q)
    c = self.conv(self.ws(jnp.repeat(y[:, :, None], 3, 2)))
    return [x, q, self.per_head(jnp.swapaxes(q, 1, 2)), y, c, self.up(c), self.dense(y), self.delta(y)]


def numpy_block(k, ids):
  """The dense Block re-derived in NumPy from its kernels ``k`` (name: kernel/bias arrays); convs left out."""
  x = k["embed"][ids] * np.sqrt(D)
  q = np.einsum("btd,dnh->btnh", x, k["q"]) + k["q_bias"]
  y = np.einsum("btnh,nhd->btd", q, k["out"])
  return [x, q, np.einsum("bnth,nhe->bnte", np.swapaxes(q, 1, 2), k["per_head"]), y]


def kernels(model):
  f = lambda a: np.asarray(a, np.float64)
  return {"embed": f(model.embed.embedding[...]), "q": f(model.q.kernel[...]), "q_bias": f(model.q.bias[...]),
          "out": f(model.out.kernel[...]), "per_head": f(model.per_head.kernel[...])}


@pytest.mark.parametrize("mode", ["reconstruct", "factored"])
def test_nnx_einsum_attention_and_subclasses_equal_the_dense_block(mode):
  model = Block(nnx.Rngs(0))
  want, ref = model(IDS), numpy_block(kernels(model), IDS)
  report = svdify_nnx.svdify(model, mode=mode)
  assert set(report.converted) == {"embed", "q", "per_head", "out", "ws", "conv", "up", "dense"}
  assert set(report.left) == {"delta"} and not set(report.left) & set(report.converted)  # each layer once
  assert report.converted["per_head"] == f"Einsum -> EinsumSVD: 2 × (3 × 4), rank 3 of 3, {mode}"
  assert report.converted["q"] == f"Einsum -> EinsumSVD: 8 × 8, rank 8 of 8, {mode}"
  assert report.converted["ws"].endswith("reconstruct (subclass WSConv: kernel read through the param)")
  assert "defines its own variables ['delta']" in report.left["delta"]
  assert report.converted["up"] == f"ConvTranspose -> ConvTransposeSVD: 4 × 16, rank 4 of 4, {mode}"
  assert type(model.embed).__name__ == "ScaledEmbedSVD" and isinstance(model.embed, ScaledEmbed)
  got = model(IDS)
  for a, b in zip(got[:4], ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  for a, b in zip(got, want):
    chex.assert_trees_all_close(a, b, rtol=1e-4, atol=1e-4)


def test_nnx_einsum_prunes_to_numpy_truncated_svd_and_checkpoint_restores(tmp_path):
  model = Block(nnx.Rngs(1))
  dense = kernels(model)
  svdify_nnx.svdify(model, ranks={"out": 3, "per_head": 2, "embed": 5})
  m = np.transpose(dense["out"], (2, 0, 1)).reshape(D, N * H)  # rows: D (only in out), columns: (N, H)
  u, s, vt = np.linalg.svd(m)
  best = (u[:, :3] * s[:3] @ vt[:3]).reshape(D, N, H).transpose(1, 2, 0)
  q = np.asarray(model.q(model.embed(IDS)))
  np.testing.assert_allclose(model.out(q), np.einsum("btnh,nhd->btd", q, best), rtol=1e-4, atol=1e-5)
  heads = [np.linalg.svd(dense["per_head"][n].T, compute_uv=False) for n in range(N)]  # per head: E × H
  np.testing.assert_allclose(model.per_head.s[...], np.stack(heads)[:, :2], rtol=1e-5)
  small, new_ranks, _ = svdify_nnx.prune(model, Strategy("count", prune_by=1))  # each layer drops one direction
  assert new_ranks["q"] == 7 and new_ranks["per_head"] == 1 and new_ranks["ws"] == 3
  assert small.q.U.shape == (8, 7) and small.per_head.U.shape == (N, 3, 1) and small(IDS)[1].shape == (1, 5, N, H)
  np.testing.assert_allclose(small.per_head.s[...], np.stack(heads)[:, :1], rtol=1e-5)
  checkpoint_nnx.save(str(tmp_path), small, step=1)
  restored = checkpoint_nnx.restore(str(tmp_path), lambda: Block(nnx.Rngs(7))).model
  for a, b in zip(restored(IDS), small(IDS)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert svdify_nnx.ranks(restored) == svdify_nnx.ranks(small) and type(restored.ws).__name__ == "WSConvSVD"


def test_nnx_einsum_factors_are_sharded_like_the_kernel():
  mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
  with jax.set_mesh(mesh):
    layer = nnx.Einsum("BTD,DNH->BTNH", (D, N, H), (N, H), rngs=nnx.Rngs(0),
                       kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("data", "model")),
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("model", None)))
    holder = nnx.Dict(attn=layer)
    svdify_nnx.svdify(holder)
    new = holder["attn"]
    assert isinstance(new, view_layers.EinsumSVD)
    assert new.U.get_metadata()["out_sharding"] == ("model", None)  # rows: N (major out axis) → 'model'
    assert new.V.get_metadata()["out_sharding"] == ("data", None) and new.s.get_metadata()["out_sharding"] == (None,)
    assert new.bias.get_metadata()["out_sharding"] == ("model", None)


def test_nnx_subclass_that_bypasses_its_kernel_is_refused_and_the_model_unchanged():
  class Bypass(nnx.Linear):
    def __call__(self, x):
      return jnp.sum(x, -1, keepdims=True) * jnp.ones(self.out_features)

  holder = nnx.Dict(a=Bypass(4, 2, rngs=nnx.Rngs(0)), b=nnx.Linear(4, 2, rngs=nnx.Rngs(0)))
  report = svdify_nnx.svdify(holder)
  assert "never reads its kernel Param" in report.left["a"] and type(holder["a"]) is Bypass
  assert set(nnx.state(holder["a"], nnx.Param).to_pure_dict()) == {"kernel", "bias"}


class StdConv(nn.Conv):
  """Weight standardization, big_vision style (``param`` overridden)."""

  def param(self, name, *args, **kwargs):
    p = super().param(name, *args, **kwargs)
    return (p - p.mean(axis=(0, 1, 2))) / (p.std(axis=(0, 1, 2)) + 1e-5) if name == "kernel" else p


class LinenScaledEmbed(nn.Embed):
  def __call__(self, ids):
    return super().__call__(ids) * np.sqrt(self.features).astype(np.float32)


class LinenDelta(nn.Dense):
  @nn.compact
  def __call__(self, x):
    self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
    return x @ self.param("delta", nn.initializers.ones, (x.shape[-1], self.features))


class LinenBlock(nn.Module):
  @nn.compact
  def __call__(self, ids):
    x = LinenScaledEmbed(10, D)(ids)
    q = nn.Einsum((D, N, H), "BTD,DNH->BTNH", name="q")(x)
    y = nn.Einsum((N, H, D), "BTNH,NHD->BTD", use_bias=False, name="out")(q)
    c = nn.Conv(4, (3, 3))(StdConv(4, (3, 3))(jnp.repeat(y[:, :, None], 3, 2)))
    return [x, q, y, c, nn.ConvTranspose(4, (2, 2))(c), nn.Dense(3)(y), LinenDelta(3)(y)]


@pytest.mark.parametrize("mode", ["reconstruct", "factored"])
def test_linen_subclasses_and_report_each_layer_once(mode):
  dense = LinenBlock().init(jax.random.key(0), IDS)
  svd_model = svdify(LinenBlock(), mode=mode)
  report = svd_model.report(IDS)
  assert set(report.converted) == {"LinenScaledEmbed_0", "q", "out", "StdConv_0", "Conv_0", "ConvTranspose_0",
                                   "Dense_0"}
  assert set(report.dense) == {"LinenDelta_0"} and "own param 'delta'" in report.dense["LinenDelta_0"]
  assert report.converted["StdConv_0"].execution == "reconstruct (subclass StdConv: kernel read through the param)"
  assert report.converted["Conv_0"].execution == mode and report.converted["q"].matrix == "8 × 8"
  variables = decompose(svd_model, dense, IDS)
  p = dense["params"]
  x = np.asarray(p["LinenScaledEmbed_0"]["embedding"])[IDS] * np.sqrt(D)
  q = np.einsum("btd,dnh->btnh", x, p["q"]["kernel"]) + np.asarray(p["q"]["bias"])
  got, want = svd_model.apply(variables, IDS), LinenBlock().apply(dense, IDS)
  np.testing.assert_allclose(got[1], q, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got[2], np.einsum("btnh,nhd->btd", q, p["out"]["kernel"]), rtol=1e-4, atol=1e-5)
  for a, b in zip(got, want):
    chex.assert_trees_all_close(a, b, rtol=1e-4, atol=1e-4)
  assert set(variables["params"]["LinenDelta_0"]) == {"kernel", "delta"}  # no stray factors of the refused layer
