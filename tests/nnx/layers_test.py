"""NNX SVD layers against flax's own dense NNX layers (``nnx.Linear/LinearGeneral/Conv/Embed``) and NumPy's SVD."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.nnx import svdifylib as svdify_nnx


def rngs(seed=0):
  """RBG keys: threefry costs seconds of XLA compile per parameter shape on CPU; any key implementation works."""
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


MODES = ("reconstruct", "factored")  # 'auto' picks one of them


@nnx.jit
def apply(layer, x):
  return layer(x)


@nnx.jit
def attend(layer, q):
  return layer.attend(q)


def truncated(matrix, k):
  u, s, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
  return (u[:, :k] * s[:k]) @ vt[:k]


def test_linear_general_matrix_view_is_inputs_by_outputs_flattened():
  dense = nnx.LinearGeneral((3, 4), (2, 5), axis=(1, -1), rngs=rngs())
  dense.bias.set_value(normal(1, (2, 5)))
  x = normal(2, (6, 3, 7, 4))
  full = [svdify_nnx.to_svd(dense, None, mode=mode) for mode in MODES]
  low = [svdify_nnx.to_svd(dense, 4, mode=mode) for mode in MODES]
  chex.assert_shape([full[0].U[...], full[0].V[...]], [(10, 10), (12, 10)])
  for layer in full:
    np.testing.assert_allclose(apply(layer, x), apply(dense, x), rtol=1e-4, atol=1e-5)
  dense.kernel.set_value(jnp.asarray(truncated(dense.kernel[...].reshape(12, 10), 4).reshape(3, 4, 2, 5), jnp.float32))
  for layer in low:
    np.testing.assert_allclose(apply(layer, x), apply(dense, x), rtol=1e-4, atol=1e-5)


CONVS = [  # (kernel_size, strides, padding, decomposition, input shape)
    ((3, 2), (2, 1), "REFLECT", "spatial", (2, 9, 8, 4)),
    ((3, 3), 2, ((1, 0), (2, 1)), "spatial", (3, 2, 9, 9, 4)),  # explicit pads, two batch dimensions
    (3, 2, "CAUSAL", "channel", (2, 10, 4)),
]


@pytest.mark.parametrize("kernel_size,strides,padding,decomposition,shape", CONVS)
def test_conv_svd_equals_nnx_conv(kernel_size, strides, padding, decomposition, shape):
  dense = nnx.Conv(4, 6, kernel_size, strides, padding=padding, rngs=rngs())
  dense.bias.set_value(normal(1, (6,)))
  x = normal(2, shape)
  for mode in MODES:
    svd = svdify_nnx.to_svd(dense, None, decomposition, mode)
    np.testing.assert_allclose(apply(svd, x), apply(dense, x), rtol=1e-4, atol=1e-5)


def test_conv_rank_k_is_the_truncated_channel_view():
  dense = nnx.Conv(4, 6, (3, 3), rngs=rngs())
  x = normal(2, (2, 7, 7, 4))
  svd = svdify_nnx.to_svd(dense, 3, "channel", "factored")
  dense.kernel.set_value(jnp.asarray(truncated(dense.kernel[...].reshape(36, 6), 3).reshape(3, 3, 4, 6), jnp.float32))
  np.testing.assert_allclose(apply(svd, x), apply(dense, x), rtol=1e-4, atol=1e-5)


def test_embed_lookup_and_tied_logits_share_one_set_of_factors():
  dense = nnx.Embed(11, 6, rngs=rngs())
  ids = jnp.array([[0, 3, 10], [5, 5, 1]])
  q = normal(1, (2, 3, 6))
  e2 = truncated(dense.embedding[...], 2)
  for mode in MODES:
    svd = svdify_nnx.to_svd(dense, None, mode=mode)
    chex.assert_shape([svd.U[...], svd.s[...], svd.V[...]], [(6, 6), (6,), (11, 6)])
    np.testing.assert_allclose(apply(svd, ids), apply(dense, ids), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attend(svd, q), attend(dense, q), rtol=1e-4, atol=1e-5)
    low = svdify_nnx.to_svd(dense, 2, mode=mode)
    np.testing.assert_allclose(apply(low, ids), e2[np.asarray(ids)], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(attend(low, q), np.asarray(q) @ e2.T, rtol=1e-4, atol=1e-5)


def test_random_init_has_orthonormal_factors_at_the_requested_rank():
  layers = [nnx_layers.ConvSVD(4, 6, (3, 3), rank=2, decomposition="spatial", rngs=rngs()),
            nnx_layers.LinearGeneralSVD(8, (2, 3), rank=5, rngs=rngs())]
  assert [layer.rank for layer in layers] == [2, 5]
  for layer in layers:
    for factor in (layer.U[...], layer.V[...]):
      np.testing.assert_allclose(factor.T @ factor, np.eye(layer.rank), atol=1e-5)
  chex.assert_shape([layers[0].U[...], layers[0].V[...]], [(18, 2), (12, 2)])  # spatial: (kw·n) × (kh·c)
  assert apply(layers[1], jnp.ones((2, 8))).shape == (2, 2, 3)


def test_layer_errors_are_one_line_and_name_the_layer():
  with pytest.raises(ValueError, match="LinearSVD.rank=9 exceeds"):
    nnx_layers.LinearSVD(8, 5, rank=9, rngs=rngs())
  with pytest.raises(ValueError, match="mode"):
    nnx_layers.LinearSVD(8, 5, mode="fast", rngs=rngs())
  with pytest.raises(ValueError, match="rngs="):
    nnx_layers.LinearSVD(8, 5)
  with pytest.raises(ValueError, match="1-D or 2-D"):
    nnx_layers.ConvSVD(4, 6, (3, 3, 3), rngs=rngs())
  with pytest.raises(ValueError, match="layer 'x'.*rank=7 exceeds"):
    svdify_nnx.to_svd(nnx.Linear(3, 4, rngs=rngs()), 7, path="x")


def test_sharded_kernels_give_factors_sharded_along_the_same_dimensions():
  mesh = jax.make_mesh((2, 2), ("data", "model"))
  part = nnx.with_partitioning
  with jax.set_mesh(mesh):
    dense = nnx.Linear(4, 8, kernel_init=part(nnx.initializers.lecun_normal(), (None, "model")),
                       bias_init=part(nnx.initializers.zeros_init(), ("model",)), rngs=rngs())
    embed = nnx.Embed(8, 4, embedding_init=part(nnx.initializers.normal(), ("model", None)), rngs=rngs())
    svd, svd_embed = svdify_nnx.to_svd(dense, None), svdify_nnx.to_svd(embed, None)
    specs = {name: getattr(svd, name)[...].sharding.spec for name in ("U", "s", "V", "bias")}
    assert specs == {"U": P("model", None), "s": P(None), "V": P(None, None), "bias": P("model")}
    assert svd_embed.V[...].sharding.spec == P("model", None)  # V's rows are the vocab, sharded like E's
    x = normal(0, (2, 4))
    np.testing.assert_allclose(apply(svd, x), apply(dense, x), rtol=1e-4, atol=1e-5)


def test_an_older_flax_gets_a_one_line_error(monkeypatch):
  import flax
  monkeypatch.setattr(flax, "__version__", "0.10.3")
  with pytest.raises(RuntimeError, match="needs flax >= 0.12; flax 0.10.3 is installed"):
    svdify_nnx.svdify(nnx.Linear(2, 3, rngs=rngs()))
