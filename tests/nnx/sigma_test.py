"""The official forward (σ → |σ|) and init on Flax NNX SVD layers (``sigma``, ``init``), against NumPy.

The reference is flax's own dense model carrying kernels rebuilt in NumPy as U·diag(|s|)·Vᵀ, after some σ were made
negative: there 'abs' and 'signed' differ, and only 'abs' may equal it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.nnx import svdifylib as svdify_nnx
from tests.nnx.svdify_test import CNN, cnn_batch, forward, rel_err, rngs


def _flip_some_signs(model):
  """Negates every other σ of each SVD layer (in place); returns the layers."""
  layers = svdify_nnx.svd_modules(model)
  for layer in layers.values():
    s = np.asarray(layer.s[...]).copy()
    s[::2] *= -1
    layer.s.set_value(jnp.asarray(s))
  return layers


def _abs_kernel(layer, dense_kernel_shape):
  """NumPy: the dense kernel of U·diag(|s|)·Vᵀ (channel view: M = n × (…·c), rows of V in the kernel's order)."""
  U, s, V = (np.asarray(a, np.float64) for a in (layer.U[...], layer.s[...], layer.V[...]))
  matrix = (U * np.abs(s)) @ V.T  # n × c·…
  return matrix.T.reshape(dense_kernel_shape)


def test_abs_sigma_equals_the_numpy_rebuilt_dense_model_and_signed_does_not():
  x, _ = cnn_batch()
  dense = CNN(rngs=rngs())
  dense.eval()
  model = CNN(rngs=rngs())
  model.eval()
  svdify_nnx.svdify(model, sigma="abs")
  layers = _flip_some_signs(model)
  for path, layer in layers.items():
    target = getattr(dense, path)
    target.kernel.set_value(jnp.asarray(_abs_kernel(layer, target.kernel.shape), jnp.float32))
  reference = forward(dense, x)
  assert rel_err(forward(model, x), reference) <= 1e-5
  for layer in layers.values():
    layer.sigma = "signed"
  assert rel_err(forward(model, x), reference) > 1e-2  # the flipped signs matter for 'signed'


def test_abs_sigma_gradient_is_sign_sigma_times_the_signed_gradient():
  """∂L/∂s under |s| equals sign(s)·∂L/∂s' of the signed layer evaluated at s' = |s| (chain rule, no sqrt)."""
  x = jax.random.normal(jax.random.key(1), (4, 12))
  layer = nnx_layers.LinearSVD(12, 6, rngs=rngs(), sigma="abs", init="official")
  twin = nnx_layers.LinearSVD(12, 6, rngs=rngs(), sigma="signed")
  twin.U.set_value(layer.U[...])
  twin.V.set_value(layer.V[...])
  twin.s.set_value(jnp.abs(layer.s[...]))
  loss = lambda m: jnp.sum(jnp.tanh(m(x)))  # noqa: E731
  g_abs, g_signed = nnx.grad(loss)(layer), nnx.grad(loss)(twin)
  s = np.asarray(layer.s[...])
  assert (s < 0).any() and (s > 0).any()
  np.testing.assert_allclose(g_abs["s"][...], np.sign(s) * g_signed["s"][...], rtol=1e-5, atol=1e-6)
  chex.assert_tree_all_finite(g_abs)


def test_official_init_draws_as_the_official_code():
  """U ~ N(0, 2/r), V ~ N(0, 2/c) (torch kaiming_normal on (n, r) and (r, c)), s ~ N(0, 1): signs of both kinds."""
  layer = nnx_layers.LinearSVD(512, 256, rngs=rngs(), init="official")
  U, s, V = (np.asarray(a) for a in (layer.U[...], layer.s[...], layer.V[...]))
  assert U.shape == (256, 256) and V.shape == (512, 256)
  np.testing.assert_allclose(U.std(), np.sqrt(2 / 256), rtol=0.02)
  np.testing.assert_allclose(V.std(), np.sqrt(2 / 512), rtol=0.02)
  np.testing.assert_allclose([s.mean(), s.std()], [0.0, 1.0], atol=0.15)
  conv = nnx_layers.ConvSVD(4, 8, (3, 3), rngs=rngs(), init="official", decomposition="spatial")
  assert conv.U.shape == (3 * 8, 12) and conv.V.shape == (3 * 4, 12)  # spatial: kw·n × kh·c, r = 12
  conv_s = np.asarray(conv.s[...])
  assert (conv_s < 0).any() and (conv_s > 0).any()  # drawn, not the (non-negative) SVD of a He draw


def test_sigma_survives_a_checkpoint_and_bad_values_are_named(tmp_path):
  x, _ = cnn_batch()
  model = CNN(rngs=rngs())
  model.eval()
  svdify_nnx.svdify(model, sigma="abs")
  _flip_some_signs(model)
  checkpoint_nnx.save(str(tmp_path / "ckpt"), model, step=1)
  restored = checkpoint_nnx.restore(str(tmp_path / "ckpt"), lambda: CNN(rngs=rngs()))
  assert restored.architecture.user["svdify"]["sigma"] == "abs"
  assert {layer.sigma for layer in svdify_nnx.svd_modules(restored.model).values()} == {"abs"}
  restored.model.eval()
  np.testing.assert_array_equal(forward(restored.model, x), forward(model, x))
  with pytest.raises(ValueError, match="svdify.sigma"):
    svdify_nnx.svdify(CNN(rngs=rngs()), sigma="absolute")
  with pytest.raises(ValueError, match="LinearSVD.init"):
    nnx_layers.LinearSVD(4, 4, rngs=rngs(), init="kaiming")
