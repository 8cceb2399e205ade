"""Data-aware compression of Einsum layers (``core.calibration.einsum_rows``, ``jaxsvd.nnx.calibration``).

References: NumPy reshapes of the input written out per einsum string, and the layer outputs themselves — for any
kernel B, ‖einsum(x, W) − einsum(x, B)‖² must equal Σ_L tr((W − B) C (W − B)ᵀ) with C from the rows.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import einsum_view
from jaxsvd.nnx import calibration as nnx_calibration
from jaxsvd.pruning import compress as compress_lib
from tests.nnx.surface_test import DIM, HEAD_DIM, HEADS, Attention

B, T, D, N, H, F = 3, 5, 6, 2, 4, 7

CASES = {  # einsum string: (input shape, kernel shape, the rows written out in NumPy: (*L, rows, k))
    "BTD,DNH->BTNH": ((B, T, D), (D, N, H), lambda x: x.reshape(-1, D)),
    "BTNH,NHD->BTD": ((B, T, N, H), (N, H, D), lambda x: x.reshape(-1, N * H)),
    "BTNH,NHD->BTND": ((B, T, N, H), (N, H, D), lambda x: x.transpose(2, 0, 1, 3).reshape(N, -1, H)),
    "...D,DF->...F": ((B, T, D), (D, F), lambda x: x.reshape(-1, D)),
    "BTD,DF->BF": ((B, T, D), (D, F), lambda x: x.sum(1)),
    "BSD,CDKH->CBSKH": ((B, T, D), (2, D, N, H), lambda x: x.reshape(-1, D)),
}


@pytest.mark.parametrize("spec", sorted(CASES))
def test_einsum_statistics_equal_an_explicit_reshape_and_the_output_error(spec):
  x_shape, k_shape, rows_of = CASES[spec]
  keys = jax.random.split(jax.random.key(0), 3)
  x = np.asarray(jax.random.normal(keys[0], x_shape), np.float64)
  w, b = (np.asarray(jax.random.normal(k, k_shape), np.float64) for k in keys[1:])
  view = einsum_view(k_shape, spec)
  rows = np.asarray(calibration.einsum_rows(jnp.asarray(x, jnp.float32), spec, view), np.float64)
  np.testing.assert_allclose(rows, rows_of(x), rtol=1e-5, atol=1e-5)
  gram = np.einsum("...ni,...nj->...ij", rows, rows)
  diff = np.asarray(view.to_matrix(jnp.asarray(w - b, jnp.float32)), np.float64)
  diff, gram = diff.reshape(-1, *diff.shape[-2:]), gram.reshape(-1, *gram.shape[-2:])
  predicted = np.einsum("amk,akl,aml->", diff, gram, diff)
  actual = np.sum((np.einsum(spec, x, w) - np.einsum(spec, x, b)) ** 2)
  np.testing.assert_allclose(predicted, actual, rtol=1e-4)


def attention_inputs(seed: int = 0):
  scale = jnp.geomspace(4.0, 0.02, DIM)  # anisotropic features: what the data-aware methods exploit
  return [jax.random.normal(jax.random.key(seed + i), (4, 12, DIM)) * scale for i in range(2)]


EINSUMS = ("q_einsum", "kv_einsum", "attn_vec_einsum")


def test_nnx_einsum_statistics_are_collected_at_the_layer_inputs():
  block, batches = Attention(rngs=nnx.Rngs(0)), attention_inputs()
  stats, views = nnx_calibration.collect(block, batches)
  assert set(stats) == set(EINSUMS)
  x = np.concatenate([np.asarray(b, np.float64).reshape(-1, DIM) for b in batches])
  np.testing.assert_allclose(stats["q_einsum"].second_moment, x.T @ x, rtol=1e-4, atol=1e-3)
  assert stats["attn_vec_einsum"].second_moment.shape == (HEADS * HEAD_DIM,) * 2
  assert views["kv_einsum"].matrix_shape == (2 * HEADS * HEAD_DIM, DIM)


def test_nnx_compress_of_an_einsum_attention_block_beats_plain_on_the_layer_outputs():
  reference, batches = Attention(rngs=nnx.Rngs(0)), attention_inputs()
  x = attention_inputs(5)[0]
  errors = {}
  for method in ("plain", "whitened"):
    block = Attention(rngs=nnx.Rngs(0))
    report, ranks = nnx_calibration.compress(block, batches, method=method, params_reduction=2.0)
    assert set(ranks) == set(EINSUMS) and set(report.converted) == set(EINSUMS), report
    errors[method] = float(jnp.sum((block.q_einsum(x) - reference.q_einsum(x)) ** 2))
  assert errors["whitened"] < 0.5 * errors["plain"], errors


def test_a_stacked_layer_shares_one_rank_whose_error_is_the_summed_spectrum():
  w = np.asarray(jax.random.normal(jax.random.key(1), (3, 8, 5)), np.float64)  # L = 3 matrices 8 × 5
  sigma = np.linalg.svd(w, compute_uv=False)
  shared = compress_lib.shared_rank_spectrum(sigma)
  for r in range(6):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    error = np.sum((w - (u[..., :r] * s[..., None, :r]) @ vt[..., :r, :]) ** 2)
    np.testing.assert_allclose(np.sum(shared[r:] ** 2), error, rtol=1e-10, atol=1e-10)
  assert np.all(np.diff(shared) <= 0)
  counter = compress_lib.params_counter({"stacked": einsum_view((3, 8, 5), "LNK,LKM->LNM"),
                                         "plain": einsum_view((8, 6), "NK,KM->NM")})
  ranks = compress_lib.allocate({"stacked": sigma, "plain": np.linspace(3, 1, 6)}, counter, 2.0)
  chex.assert_equal(set(ranks), {"stacked", "plain"})
  assert 3 * ranks["stacked"] * 13 + ranks["plain"] * 14 <= (3 * 40 + 48) / 2


class KeywordBlock(nnx.Module):
  """A block called as research code calls it: ``block(x, scale=...)`` (keyword inputs)."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.attn = Attention(rngs=rngs)

  def __call__(self, x, *, scale):
    return self.attn(x * scale)


def test_forward_with_keyword_inputs_and_layers_without_statistics_are_named():
  batches = [{"x": x, "scale": 2.0} for x in attention_inputs()]
  block = KeywordBlock(rngs=nnx.Rngs(0))
  stats, _ = nnx_calibration.collect(block, batches, forward=lambda m, b: m(b["x"], scale=b["scale"]))
  x = np.concatenate([2.0 * np.asarray(b["x"], np.float64).reshape(-1, DIM) for b in batches])
  np.testing.assert_allclose(stats["attn/q_einsum"].second_moment, x.T @ x, rtol=1e-4, atol=1e-2)
  with pytest.warns(UserWarning, match="plain factors for .*attn/q_einsum"):
    report = nnx_calibration.svdify(KeywordBlock(rngs=nnx.Rngs(0)), batches[:0], method="whitened")
  assert set(report.plain) == {f"attn/{name}" for name in EINSUMS}
  assert "no statistics, plain factors: attn/q_einsum" in report.summary()


def test_nnx_compress_to_a_macs_budget_counted_by_hand():
  batches = attention_inputs()
  report, ranks = nnx_calibration.compress(Attention(rngs=nnx.Rngs(0)), batches, macs_reduction=3.0)
  vectors = sum(b.shape[0] * b.shape[1] for b in batches)  # every projection maps each position once
  shapes = {"q_einsum": (HEADS * HEAD_DIM, DIM), "kv_einsum": (2 * HEADS * HEAD_DIM, DIM),
            "attn_vec_einsum": (DIM, HEADS * HEAD_DIM)}
  dense = sum(vectors * m * k for m, k in shapes.values())
  cost = sum(min(vectors * m * k, vectors * ranks[p] * (m + k)) for p, (m, k) in shapes.items())
  assert cost <= dense / 3.0 and set(report.converted) == set(EINSUMS)
  assert max(ranks.values()) >= 2  # the budget is spent, not everything at rank 1
  with pytest.raises(ValueError, match="not both"):
    nnx_calibration.compress(Attention(rngs=nnx.Rngs(0)), batches, params_reduction=2.0, macs_reduction=2.0)
  with pytest.raises(ValueError, match="macs_reduction must be a number >= 1, got 0.5"):
    nnx_calibration.compress(Attention(rngs=nnx.Rngs(0)), batches, macs_reduction=0.5)


def test_statistics_under_jit_equal_eager_ones_and_no_flax_class_is_patched():
  batches, seen = attention_inputs(), []
  original = nnx.Einsum.__call__

  def forward(model, x):
    seen.append(nnx.Einsum.__call__ is original and type(model.q_einsum) is not nnx.Einsum)
    return model(x)

  block = Attention(rngs=nnx.Rngs(0))
  jitted, _ = nnx_calibration.collect(block, batches, forward=forward)
  eager, _ = nnx_calibration.collect(block, batches, forward=forward, jit=False)
  for path in EINSUMS:
    np.testing.assert_allclose(jitted[path].second_moment, eager[path].second_moment, rtol=1e-5, atol=1e-4)
    assert jitted[path].count == eager[path].count
  assert seen and all(seen)  # a per-instance subclass while measuring, flax's own class untouched
  assert type(block.q_einsum) is nnx.Einsum  # restored
