"""``nnx.ConvTranspose`` in SVD form (``jaxsvd.nnx.kinds.conv_transpose``): the kind added as one module.

References are flax's own ``nnx.ConvTranspose`` and NumPy's SVD (the best rank-k approximation of the matrix view),
not our code.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd import checkpoint
from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.nnx import calibration as nnx_calibration
from jaxsvd.nnx import kinds
from jaxsvd.nnx import svdifylib as svdify_nnx
from jaxsvd.nnx.kinds import conv_transpose as ct
from jaxsvd.pruning import Strategy

MODES = ("reconstruct", "factored", "auto")


def rngs(seed=0):
  """RBG keys: threefry costs seconds of XLA compile per parameter shape on CPU."""
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def layer(nd, strides, padding, use_bias, transpose_kernel=False, dilation=None, seed=0, c=3, n=5):
  kernel_size = (3,) if nd == 1 else (3, 2)
  dense = nnx.ConvTranspose(c, n, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                            kernel_dilation=dilation, transpose_kernel=transpose_kernel, rngs=rngs(seed))
  if use_bias:
    dense.bias.set_value(jax.random.normal(jax.random.key(seed + 1), (n,)))
  return dense


def inputs(nd, c=3, batch=2, size=6, seed=2):
  return jax.random.normal(jax.random.key(seed), (batch, *(size,) * nd, c))


CASES = [(nd, strides, padding, use_bias) for nd, strides, padding, use_bias in
         itertools.product((1, 2), (1, 2, 3), ("SAME", "VALID"), (True, False))]


@pytest.mark.parametrize("nd, strides, padding, use_bias", CASES)
def test_full_rank_equals_the_dense_layer_in_every_mode(nd, strides, padding, use_bias):
  dense, x = layer(nd, strides, padding, use_bias), inputs(nd)
  want = dense(x)
  outs = [svdify_nnx.to_svd(dense, None, mode=mode)(x) for mode in MODES]
  for got in outs:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)  # the modes agree with each other too


@pytest.mark.parametrize("transpose_kernel, dilation, padding", [(True, None, "SAME"), (True, 2, "VALID"),
                                                                 (False, 2, "SAME"), (False, None, [(2, 1), (0, 3)]),
                                                                 (True, None, 1)])
def test_transposed_kernels_dilation_and_explicit_pads(transpose_kernel, dilation, padding):
  dense, x = layer(2, 2, padding, True, transpose_kernel, dilation), inputs(2)
  for mode in MODES:
    np.testing.assert_allclose(svdify_nnx.to_svd(dense, None, mode=mode)(x), dense(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(svdify_nnx.to_svd(dense, None)(x[0]), dense(x[0]), rtol=1e-5, atol=1e-5)  # no batch axis


class Decoder(nnx.Module):
  """A user's upsampling model: conv, a 2-D and a 1-D transposed conv, a dense head."""

  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), strides=2, rngs=rngs)
    self.up = nnx.ConvTranspose(8, 6, (3, 3), strides=2, rngs=rngs)
    self.up1d = nnx.ConvTranspose(6, 4, 4, strides=2, padding="VALID", use_bias=False, rngs=rngs)
    self.ring = nnx.ConvTranspose(4, 4, 3, padding="CIRCULAR", rngs=rngs)
    self.head = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x):
    y = nnx.relu(self.up(nnx.relu(self.conv(x))))  # (B, 8, 8, 6)
    y = self.up1d(y.reshape(y.shape[0], -1, 6))  # (B, 130, 4)
    return self.head(self.ring(nnx.relu(y)).mean(axis=1))


def images(seed=0, batch=8):
  return jax.random.normal(jax.random.key(seed), (batch, 8, 8, 3)) * jnp.array([2.0, 0.2, 1.0])


def test_svdify_lists_it_and_the_model_computes_the_same_function():
  x, dense = images(), Decoder(rngs(0))
  model = Decoder(rngs(0))
  report = svdify_nnx.svdify(model, ranks={"up": 5}, mode="factored")
  assert report.converted["up"] == "ConvTranspose -> ConvTransposeSVD: 6 × 72, rank 5 of 6, factored"
  assert report.converted["up1d"] == "ConvTranspose -> ConvTransposeSVD: 4 × 24, rank 4 of 4, factored"
  assert "padding='CIRCULAR'" in report.left["ring"] and set(report.converted) == {"conv", "up", "up1d", "head"}
  assert isinstance(model.up, kinds.ConvTransposeSVD) and kinds.resolve(model.up) is kinds.conv_transpose.KIND
  full = Decoder(rngs(0))
  svdify_nnx.svdify(full)
  np.testing.assert_allclose(full(x), dense(x), rtol=1e-4, atol=1e-5)


def best_rank(kernel, view, k):
  """NumPy's best rank-k approximation of ``kernel``'s matrix view, back in the kernel's shape."""
  m = np.asarray(view.to_matrix(jnp.asarray(kernel)), np.float64)
  u, s, vt = np.linalg.svd(m, full_matrices=False)
  return np.asarray(view.to_kernel(jnp.asarray(u[:, :k]), jnp.asarray(s[:k]), jnp.asarray(vt[:k].T)))


def test_energy_prune_keeps_the_best_low_rank_approximation():
  x, dense = images(), Decoder(rngs(0))
  model = Decoder(rngs(0))
  svdify_nnx.svdify(model)
  small, ranks, report = svdify_nnx.prune(model, Strategy("energy", energy=0.2))
  assert ranks["up"] < 6 and ranks["up1d"] < 4 and report.layers["up"].new_rank == ranks["up"]
  for name, h in (("up", x[..., :1].repeat(8, -1)[:, ::2, ::2]), ("up1d", x.reshape(8, -1, 6)[:, :20])):
    dense_layer, pruned = getattr(dense, name), getattr(small, name)
    best = best_rank(dense_layer.kernel[...], pruned.view, ranks[name])
    rebuilt = pruned.view.to_kernel(pruned.U[...], pruned.s[...], pruned.V[...])
    np.testing.assert_allclose(rebuilt, best, rtol=1e-4, atol=1e-5)
    dense_layer.kernel.set_value(jnp.asarray(best, jnp.float32))  # the dense layer with NumPy's best kernel
    for mode in ("reconstruct", "factored"):
      pruned.mode = mode
      np.testing.assert_allclose(pruned(h), dense_layer(h), rtol=1e-4, atol=1e-5)
  assert svdify_nnx.ranks(model)["up"] == 6  # prune is pure: the input keeps its ranks


def test_checkpoint_restores_to_the_same_outputs(tmp_path):
  x, model = images(), Decoder(rngs(0))
  svdify_nnx.svdify(model, ranks={"up": 4, "up1d": 3}, mode="factored")
  checkpoint_nnx.save(str(tmp_path), model, step=2)
  restored = checkpoint_nnx.restore(str(tmp_path), lambda: Decoder(rngs(5))).model
  assert svdify_nnx.ranks(restored) == svdify_nnx.ranks(model) and restored.up.mode == "factored"
  np.testing.assert_allclose(restored(x), model(x), rtol=1e-6, atol=1e-6)
  again = checkpoint.restore(str(tmp_path), model=lambda: Decoder(rngs(9))).model  # the generic restore
  np.testing.assert_allclose(again(x), model(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nd, transpose_kernel, padding", [(2, False, "SAME"), (2, True, "VALID"), (1, False, "VALID"),
                                                           (1, True, [(1, 2)])])
def test_statistics_are_the_vectors_its_matrix_multiplies(nd, transpose_kernel, padding):
  dense, x = layer(nd, 2, padding, False, transpose_kernel, dilation=2 if nd == 1 else None), inputs(nd)
  kind = kinds.resolve(dense)
  view = kind.view(dense, "channel")
  rows = np.asarray(ct.transpose_rows(dense, x), np.float64)
  matrix = np.asarray(view.to_matrix(dense.kernel[...]), np.float64)  # n × ∏k·c
  np.testing.assert_allclose(rows @ matrix.T, np.asarray(dense(x)).reshape(-1, 5), rtol=1e-4, atol=1e-4)
  gram, abs_sum, count = kind.moments(dense, x, view)
  np.testing.assert_allclose(gram, rows.T @ rows, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(abs_sum, np.abs(rows).sum(0), rtol=1e-4, atol=1e-4) and count == len(rows)
  macs = kind.macs(dense, x.shape)
  assert macs["dense"] == x.size * int(np.prod(dense.kernel_size)) * 5  # each input entry meets ∏k·n taps


def test_data_aware_compression_measures_it():
  x = images(batch=16)
  stats, views = nnx_calibration.collect(Decoder(rngs(0)), [x[:8], x[8:]])
  assert {"up", "up1d"} <= set(stats) and "ring" not in views and stats["up"].count == 16 * 8 * 8
  assert stats["up"].second_moment.shape == (72, 72) and stats["up1d"].second_moment.shape == (24, 24)
  reference, full = Decoder(rngs(0)), Decoder(rngs(0))
  nnx_calibration.svdify(full, [x], method="whitened")  # full rank: the same function
  np.testing.assert_allclose(full(x), reference(x), rtol=1e-4, atol=1e-4)
  errors = {}
  for method in ("plain", "whitened"):
    model = Decoder(rngs(0))
    nnx_calibration.svdify(model, [x], ranks={"up": 2}, method=method)
    h = nnx.relu(reference.conv(x))
    errors[method] = float(jnp.sum((model.up(h) - reference.up(h)) ** 2))
  assert errors["whitened"] < errors["plain"]
  model = Decoder(rngs(0))
  report, ranks = nnx_calibration.compress(model, [x], params_reduction=2.0)
  assert {"up", "up1d"} <= set(ranks) and isinstance(model.up, kinds.ConvTransposeSVD)
  assert all(report.ranks[p] == r for p, r in ranks.items())


def test_what_stays_dense_says_why():
  ring = nnx.ConvTranspose(3, 4, (3, 3), padding="CIRCULAR", rngs=rngs(0))
  masked = nnx.ConvTranspose(3, 4, (3,), mask=jnp.ones((3, 3, 4)), rngs=rngs(0))
  cube = nnx.ConvTranspose(3, 4, (2, 2, 2), rngs=rngs(0))
  assert svdify_nnx.unsupported(ring) == ["padding='CIRCULAR' (SAME, VALID and explicit pads convert)"]
  assert svdify_nnx.unsupported(masked) == ["a mask"]
  assert svdify_nnx.unsupported(cube) == ["3-D kernel (1-D and 2-D transposed convs convert)"]
  with pytest.raises(ValueError, match="rank=9 exceeds"):
    svdify_nnx.to_svd(layer(2, 2, "SAME", True), 9, path="up")


class ScaledUp(nnx.ConvTranspose):
  """A subclass reading its kernel through the param: converted in place (the subclass rule)."""

  def __call__(self, x):
    return super().__call__(x) * 2.0


class Holder(nnx.Module):
  def __init__(self, rngs):
    self.up = ScaledUp(3, 4, (2, 2), strides=2, rngs=rngs)

  def __call__(self, x):
    return self.up(x)


def test_a_subclass_converts_in_place_and_random_init_works():
  model, x = Holder(rngs(0)), inputs(2)
  want = model(x)
  report = svdify_nnx.svdify(model)
  assert report.converted["up"].endswith("reconstruct (subclass ScaledUp: kernel read through the param)")
  assert isinstance(model.up, ScaledUp) and checkpoint_nnx.architecture(model).user["svdify"]["decomposition"] \
      == "channel"
  np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)
  fresh = kinds.ConvTransposeSVD(3, 4, (2, 2), strides=2, rank=3, rngs=rngs(1))
  assert fresh.U.shape == (4, 3) and fresh.V.shape == (12, 3) and fresh(x).shape == want.shape
  with pytest.raises(ValueError, match="pass rngs="):
    kinds.ConvTransposeSVD(3, 4, (2, 2))
