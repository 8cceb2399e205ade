import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxsvd.core import factors
from jaxsvd.linen import layers
from jaxsvd.linen.layers import ConvSVD, DenseSVD


def reference_kernel(U, s, V, kernel_shape, decomposition):
  """The kernel from the math, element by element (independent of factors.factors_to_kernel)."""
  kh, kw, c, n = kernel_shape
  M = np.asarray(U) @ np.diag(np.asarray(s)) @ np.asarray(V).T
  K = np.zeros(kernel_shape, np.float32)
  for i in range(kh):
    for w in range(kw):
      for ci in range(c):
        for ni in range(n):
          if decomposition == "channel":  # M: n × (kh·kw·c), columns in (kh, kw, c) order
            K[i, w, ci, ni] = M[ni, (i * kw + w) * c + ci]
          else:  # M: (kw·n) × (kh·c)
            K[i, w, ci, ni] = M[w * n + ni, i * c + ci]
  return K


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
@pytest.mark.parametrize("mode", ["reconstruct", "factored", "auto"])
def test_conv_matches_lax_conv_with_reference_kernel(decomposition, padding, strides, mode):
  x = jax.random.normal(jax.random.key(1), (2, 9, 8, 5))
  model = ConvSVD(7, (3, 3), strides, padding, rank=4, decomposition=decomposition, mode=mode)
  params = model.init(jax.random.key(0), x)["params"]
  kernel = reference_kernel(params["U"], params["s"], params["V"], (3, 3, 5, 7), decomposition)
  expected = lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  chex.assert_trees_all_close(model.apply({"params": params}, x), expected, atol=2e-5, rtol=2e-5)


def test_asymmetric_kernel_and_strides_spatial():
  x = jax.random.normal(jax.random.key(1), (1, 11, 10, 3))
  model = ConvSVD(4, (3, 5), (2, 3), "SAME", decomposition="spatial", mode="factored")
  params = model.init(jax.random.key(0), x)["params"]
  kernel = reference_kernel(params["U"], params["s"], params["V"], (3, 5, 3, 4), "spatial")
  expected = lax.conv_general_dilated(x, kernel, (2, 3), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  chex.assert_trees_all_close(model.apply({"params": params}, x), expected, atol=2e-5)


@pytest.mark.parametrize("mode", ["reconstruct", "factored", "auto"])
def test_dense_matches_matmul(mode):
  x = jax.random.normal(jax.random.key(1), (4, 10))
  model = DenseSVD(6, rank=3, mode=mode)
  p = model.init(jax.random.key(0), x)["params"]
  expected = x @ (np.asarray(p["U"]) @ np.diag(p["s"]) @ np.asarray(p["V"]).T).T + p["bias"]
  chex.assert_trees_all_close(model.apply({"params": p}, x), expected, atol=1e-5)


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_full_rank_init_is_the_he_normal_draw(decomposition):
  key = jax.random.key(3)
  shape = (3, 3, 16, 32)
  U, s, V = layers.svd_init(key, shape, decomposition, None or min(factors.matrix_shape(shape, decomposition)))
  drawn = layers.default_kernel_init(key, shape, jnp.float32)
  chex.assert_trees_all_close(factors.factors_to_kernel(U, s, V, shape, decomposition), drawn, atol=1e-5)
  # He-normal: Var(W) = 2 / fan_in.
  np.testing.assert_allclose(float(jnp.var(drawn)), 2.0 / (3 * 3 * 16), rtol=0.15)
  chex.assert_trees_all_close(U.T @ U, jnp.eye(U.shape[1]), atol=1e-5)


def test_low_rank_init_preserves_frobenius_norm():
  key, shape = jax.random.key(0), (3, 3, 16, 32)
  U, s, V = layers.svd_init(key, shape, "channel", 4)
  full = layers.default_kernel_init(key, shape, jnp.float32)
  np.testing.assert_allclose(float(jnp.sum(s**2)), float(jnp.sum(full**2)), rtol=1e-4)


def test_auto_picks_cheaper_mode():
  big = factors.conv_macs(8, (16, 16), (3, 3, 64, 64), (1, 1), [(1, 1)] * 2, 64, "channel")
  small = factors.conv_macs(8, (16, 16), (3, 3, 64, 64), (1, 1), [(1, 1)] * 2, 4, "channel")
  assert factors.choose_mode("auto", big) == "reconstruct"
  assert factors.choose_mode("auto", small) == "factored"


def test_auto_counts_channels_in_vector_quanta():
  # rank 8 of a 3x3 16->16 conv halves the true MACs, but a conv to 8 channels runs like one to 16.
  args = (8, (32, 32), (3, 3, 16, 16), (1, 1), [(1, 1)] * 2, 8, "channel")
  true, quantized = factors.conv_macs(*args), factors.conv_macs(*args, quantum=factors.CHANNEL_QUANTUM)
  assert true["factored"] == 8 * 32 * 32 * 8 * (144 + 16)
  assert quantized["factored"] == 8 * 32 * 32 * (144 * 16 + 8 * 16)
  assert factors.choose_mode("auto", true) == "factored"
  assert factors.choose_mode("auto", quantized) == "reconstruct"
  assert factors.dense_macs(4, 100, 10, 3, quantum=16) == {
      "reconstruct": 100 * 10 * 3 + 4 * 100 * 16, "factored": 4 * (100 * 16 + 3 * 16), "dense": 4 * 100 * 16}


def test_full_rank_default_and_shapes():
  x = jnp.ones((1, 8, 8, 6))
  p = ConvSVD(10, decomposition="spatial").init(jax.random.key(0), x)["params"]
  chex.assert_shape([p["U"], p["s"], p["V"]], [(30, 18), (18,), (18, 18)])


@pytest.mark.parametrize("kwargs, match", [
    (dict(rank=0), "rank"), (dict(mode="fast"), "mode"), (dict(decomposition="row"), "decomposition")])
def test_bad_config_raises_at_setup(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ConvSVD(4, **kwargs)


def test_rank_above_full_raises_before_compile():
  with pytest.raises(ValueError, match="exceeds"):
    DenseSVD(4, rank=5).init(jax.random.key(0), jnp.ones((1, 8)))


def test_training_from_init_has_no_nan():
  import optax
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3))
  y = jax.random.randint(jax.random.key(1), (16,), 0, 10)

  def net(p, x):
    h = jax.nn.relu(ConvSVD(8).apply({"params": p["c"]}, x))
    return DenseSVD(10).apply({"params": p["d"]}, h.mean((1, 2)))

  p = {"c": ConvSVD(8).init(jax.random.key(2), x)["params"],
       "d": DenseSVD(10).init(jax.random.key(3), jnp.ones((1, 8)))["params"]}
  tx = optax.sgd(0.1, 0.9)
  opt = tx.init(p)
  loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(net(p, x), y).mean()
  initial = float(loss(p))
  for _ in range(20):
    value, g = jax.value_and_grad(loss)(p)
    updates, opt = tx.update(g, opt)
    p = optax.apply_updates(p, updates)
  chex.assert_tree_all_finite(p)
  assert float(loss(p)) < 0.7 * initial  # measured: 2.19 → 1.19 (random labels, 16 examples)


def test_factor_gradients_are_the_chain_rule_through_the_dense_kernel():
  """For M = U·diag(s)·Vᵀ and G = ∂L/∂M of the dense twin: ∂L/∂U = G·V·diag(s), ∂L/∂s = diag(Uᵀ·G·V),
  ∂L/∂V = Gᵀ·U·diag(s) (hand-derived; M is the channel-wise matrix view, kernel (kh·kw·c, n) = Mᵀ)."""
  x = jax.random.normal(jax.random.key(0), (4, 6, 6, 3))
  layer = ConvSVD(5, rank=4, mode="factored")
  params = layer.init(jax.random.key(1), x)["params"]
  target = jax.random.normal(jax.random.key(2), (4, 6, 6, 5))
  svd_loss = lambda q: jnp.sum((layer.apply({"params": q}, x) - target) ** 2)
  U, s, V = (np.asarray(params[k], np.float64) for k in ("U", "s", "V"))
  kernel = (V * s) @ U.T  # (3·3·3, 5), rows in (kh, kw, c) order

  def dense_loss(k):
    y = jax.lax.conv_general_dilated(x, k.reshape(3, 3, 3, 5), (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum((y - target) ** 2)

  G = np.asarray(jax.grad(dense_loss)(jnp.asarray(kernel, jnp.float32)), np.float64).T  # ∂L/∂M, (n, kh·kw·c)
  grads = jax.grad(svd_loss)(params)
  np.testing.assert_allclose(grads["U"], G @ V * s, rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(grads["s"], np.diag(U.T @ G @ V), rtol=2e-4, atol=2e-4)
  np.testing.assert_allclose(grads["V"], G.T @ U * s, rtol=2e-4, atol=2e-4)
