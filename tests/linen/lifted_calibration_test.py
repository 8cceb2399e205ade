"""Calibration statistics of linen layers under nn.scan / nn.vmap / nn.remat (``jaxsvd.linen.lifted``) and of an
``nn.Einsum`` whose string comes with the call.

References: each slice's layer inputs from a NumPy forward pass over the stacked params (a loop over slices), an
explicit NumPy reshape of an einsum input, and the dense model's own outputs.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.linen import compress as linen_compress
from jaxsvd.linen import svdify

B, T, D, H, HD, F, L = 3, 4, 8, 2, 4, 12, 3
SCALE = np.geomspace(4.0, 0.02, D)  # anisotropic features: what the data-aware methods exploit


class _Block(nn.Module):
  """Attention-like projections (DenseGeneral with 3-D kernels) and an MLP, residual."""

  @nn.compact
  def __call__(self, x, _):
    h = nn.DenseGeneral((H, HD), name="qkv")(x)  # kernel (D, H, HD)
    x = x + nn.DenseGeneral(D, axis=(-2, -1), name="out")(jnp.tanh(h))  # kernel (H, HD, D)
    return x + nn.Dense(D, name="down")(nn.relu(nn.Dense(F, name="up")(x))), None


class _Stack(nn.Module):
  """L blocks under ``nn.scan`` (over ``nn.remat`` when ``remat``)."""
  remat: bool = False

  @nn.compact
  def __call__(self, x):
    block = nn.remat(_Block) if self.remat else _Block
    scan = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True}, length=L)
    return scan(name="blocks")(x, None)[0]


def _numpy_block_inputs(p, x):
  """{layer: its input vectors (N, k)} of one block on x (B, T, D), and its output, in float64 NumPy."""
  k = lambda n: np.asarray(p[n]["kernel"], np.float64)
  b = lambda n: np.asarray(p[n]["bias"], np.float64)
  a = np.tanh(np.einsum("btd,dnh->btnh", x, k("qkv")) + b("qkv"))
  y = x + np.einsum("btnh,nhd->btd", a, k("out")) + b("out")
  u = np.maximum(y @ k("up") + b("up"), 0.0)
  return {"qkv": x.reshape(-1, D), "out": a.reshape(-1, H * HD), "up": y.reshape(-1, D),
          "down": u.reshape(-1, F)}, y + u @ k("down") + b("down")


def _inputs(seed):
  return [jax.random.normal(jax.random.key(seed + i), (B, T, D)) * SCALE for i in range(2)]


@pytest.mark.parametrize("remat", [False, True])
def test_scanned_layers_get_each_slices_own_second_moment(remat):
  net, batches = _Stack(remat), _inputs(0)
  variables = net.init(jax.random.key(1), batches[0])
  views = svdify(net).report(batches[0]).views
  stats = linen_calibration.collect(net, variables, batches, views)
  prefix = "blocks/"
  assert set(stats) == {prefix + n for n in ("qkv", "out", "up", "down")} == set(views)
  params = jax.tree.map(np.asarray, variables["params"]["blocks"])
  expected = {p[len(prefix):]: np.zeros((L, *s.second_moment.shape[1:])) for p, s in stats.items()}
  for x in batches:
    x = np.asarray(x, np.float64)
    for layer in range(L):  # the reference: a loop over slices, each on its own input
      rows, x = _numpy_block_inputs(jax.tree.map(lambda a, i=layer: a[i], params), x)
      for name, r in rows.items():
        expected[name][layer] += r.T @ r
  for name, gram in expected.items():
    np.testing.assert_allclose(stats[prefix + name].second_moment, gram, rtol=2e-4, atol=1e-3)
    chex.assert_equal(stats[prefix + name].count, 2 * B * T)
  chex.assert_shape(stats[prefix + "out"].second_moment, (L, H * HD, H * HD))


class _Member(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(D, name="down")(nn.relu(nn.Dense(F, name="up")(x)))


class _Ensemble(nn.Module):
  """L members under ``nn.vmap`` over ``nn.remat``, each on its own slice of the input (L, N, D)."""

  @nn.compact
  def __call__(self, x):
    vmap = nn.vmap(nn.remat(_Member), variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=0)
    return vmap(name="members")(x)


def test_vmapped_remat_layers_get_each_members_own_second_moment():
  x = jax.random.normal(jax.random.key(0), (L, 10, D)) * SCALE * jnp.arange(1, L + 1)[:, None, None]
  net = _Ensemble()
  variables = net.init(jax.random.key(1), x)
  views = svdify(net).report(x).views
  stats = linen_calibration.collect(net, variables, [x], views)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"]["members"])
  xs = np.asarray(x, np.float64)
  for member in range(L):
    h = np.maximum(xs[member] @ p["up"]["kernel"][member] + p["up"]["bias"][member], 0.0)
    np.testing.assert_allclose(stats["members/up"].second_moment[member], xs[member].T @ xs[member], rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(stats["members/down"].second_moment[member], h.T @ h, rtol=1e-4, atol=1e-3)
  chex.assert_equal(stats["members/up"].count, 10)


def _stack_error(out, net, variables, x):
  return float(jnp.sum((out.model.apply(out.variables, x) - net.apply(variables, x)) ** 2))


def test_whitened_compression_of_a_scanned_stack_beats_plain_within_the_budgets():
  net, batches = _Stack(remat=True), _inputs(0)
  variables = net.init(jax.random.key(1), batches[0])
  x = _inputs(7)[0]
  errors = {}
  for method in ("plain", "whitened"):
    out = linen_compress.compress(net, variables, batches, method=method, params_reduction=2.0)
    assert out.plain == {} and len(out.ranks) == 4
    views = svdify(net).report(batches[0]).views
    spent = sum(L * min(out.ranks[p] * sum(v.matrix_shape), np.prod(v.matrix_shape)) for p, v in views.items())
    assert spent <= sum(L * np.prod(v.matrix_shape) for v in views.values()) / 2.0  # counted by hand
    errors[method] = _stack_error(out, net, variables, x)
  assert errors["whitened"] < 0.5 * errors["plain"], errors
  macs = linen_compress.compress(net, variables, batches, method="whitened", macs_reduction=1.5)
  assert macs.plain == {} and macs.cost <= macs.target
  assert macs.stats["blocks/up"].second_moment.shape == (L, D, D)


class _CallStringNet(nn.Module):
  """An ``nn.Einsum`` whose string comes with the call (``nn.Einsum(shape)(x, einsum_str)``)."""

  @nn.compact
  def __call__(self, x):
    y = nn.Einsum((H, D, HD), use_bias=False, name="proj")(x, "btnd,ndh->btnh")  # n: a stack letter
    return nn.Dense(4)(y.reshape(*y.shape[:1], -1))


def test_an_einsum_string_given_with_the_call_is_the_one_measured():
  x = jax.random.normal(jax.random.key(0), (6, T, H, D)) * SCALE
  net = _CallStringNet()
  variables = net.init(jax.random.key(1), x)
  views = svdify(net).report(x).views
  stats = linen_calibration.collect(net, variables, [x], views)
  chex.assert_shape(stats["proj"].second_moment, (H, D, D))
  for head in range(H):  # head n's kernel slice multiplies x[:, :, n, :] at every position
    rows = np.asarray(x, np.float64)[:, :, head, :].reshape(-1, D)
    np.testing.assert_allclose(stats["proj"].second_moment[head], rows.T @ rows, rtol=1e-4, atol=1e-3)
  errors = {}
  for method in ("plain", "whitened"):
    out = linen_compress.compress(net, variables, [x], method=method, params_reduction=2.0)
    assert out.plain == {} and "proj" in out.ranks
    errors[method] = _stack_error(out, net, variables, x)
  assert errors["whitened"] < errors["plain"], errors
