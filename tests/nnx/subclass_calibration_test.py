"""Data-aware compression of user subclasses of NNX layers (``jaxsvd.nnx.calibration``): a Gemma-style block with a
scaled ``nnx.Embed`` subclass and a ``nnx.Linear`` subclass that normalizes its input before the parent's call.

References: the inputs each kernel multiplies written out in NumPy (token counts; the normalized features the
subclass hands to ``nnx.Linear.__call__``), and the dense block's own outputs.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd.nnx import calibration as nnx_calibration
from tests.nnx.surface_test import DIM, Attention

VOCAB, FF, B, T = 24, 32, 4, 10


class Embedder(nnx.Embed):
  """Gemma's embedder: the lookup scaled by √features, logits tied through ``decode``."""

  def __call__(self, tokens):
    return super().__call__(tokens) * jnp.sqrt(self.features).astype(jnp.float32)

  def decode(self, x):
    return self.attend(x)


class NormedLinear(nnx.Linear):
  """A Linear whose own ``__call__`` RMS-normalizes its input before the parent's: the kernel multiplies x / rms(x)."""

  def __call__(self, x):
    return super().__call__(x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6))


class RawLinear(nnx.Linear):
  """A Linear whose ``__call__`` applies the kernel itself, never calling ``nnx.Linear.__call__``."""

  def __call__(self, x):
    return x @ self.kernel[...] + self.bias[...]


class GemmaBlock(nnx.Module):
  """Embed → attention (q / kv / out Einsums) → gated MLP (gate, up: a subclass, down) → tied logits."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.embed = Embedder(VOCAB, DIM, rngs=rngs)
    self.attn = Attention(rngs=rngs)
    self.gate, self.up = nnx.Linear(DIM, FF, rngs=rngs), NormedLinear(DIM, FF, rngs=rngs)
    self.down = nnx.Linear(FF, DIM, rngs=rngs)

  def hidden(self, tokens):
    x = self.embed(tokens)
    x = x + self.attn(x)
    return x + self.down(nnx.gelu(self.gate(x)) * self.up(x))

  def __call__(self, tokens):
    return self.embed.decode(self.hidden(tokens))


LAYERS = {"embed", "attn/q_einsum", "attn/kv_einsum", "attn/attn_vec_einsum", "gate", "up", "down"}


def _tokens(seed):
  p = np.geomspace(1.0, 1e-3, VOCAB)  # Zipf-like: frequent and rare tokens
  return [jax.random.choice(jax.random.key(seed + i), VOCAB, (B, T), p=jnp.asarray(p / p.sum())) for i in range(3)]


def test_subclass_statistics_are_the_vectors_their_kernels_multiply():
  block, batches = GemmaBlock(rngs=nnx.Rngs(0)), _tokens(0)
  stats, _ = nnx_calibration.collect(block, batches)
  assert set(stats) == LAYERS
  ids = np.concatenate([np.asarray(b).ravel() for b in batches])
  np.testing.assert_allclose(stats["embed"].second_moment, np.diag(np.bincount(ids, minlength=VOCAB)))
  x = np.concatenate([np.asarray(block.embed(b) + block.attn(block.embed(b)), np.float64).reshape(-1, DIM)
                      for b in batches])
  normed = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(stats["up"].second_moment, normed.T @ normed, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(stats["gate"].second_moment, x.T @ x, rtol=1e-4, atol=1e-2)
  chex.assert_equal(stats["up"].count, len(ids))
  assert type(block.embed) is Embedder and type(block.up) is NormedLinear  # restored after measuring


def test_nnx_compress_converts_and_calibrates_every_layer_of_a_gemma_block():
  reference, batches = GemmaBlock(rngs=nnx.Rngs(0)), _tokens(0)
  held_out = _tokens(9)[0]
  errors = {}
  for method in ("plain", "whitened"):
    block = GemmaBlock(rngs=nnx.Rngs(0))
    report, ranks = nnx_calibration.compress(block, batches, method=method, params_reduction=2.0)
    assert set(ranks) == set(report.converted) == LAYERS and report.plain == {}, report.summary()
    assert type(block.embed).__mro__[1] is Embedder  # converted in place: its own methods kept
    errors[method] = float(jnp.sum((block.hidden(held_out) - reference.hidden(held_out)) ** 2))
  assert errors["whitened"] < 0.5 * errors["plain"], errors


class RawBlock(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.inner, self.raw = nnx.Linear(DIM, FF, rngs=rngs), RawLinear(FF, DIM, rngs=rngs)

  def __call__(self, x):
    return self.raw(nnx.relu(self.inner(x)))


def test_a_subclass_that_applies_its_kernel_itself_is_named_not_silently_plain():
  batches = [jax.random.normal(jax.random.key(i), (B, DIM)) for i in range(2)]
  stats, _ = nnx_calibration.collect(RawBlock(rngs=nnx.Rngs(0)), batches)
  assert set(stats) == {"inner"}
  with pytest.warns(UserWarning, match="plain factors for .*raw"):
    report = nnx_calibration.svdify(RawBlock(rngs=nnx.Rngs(0)), batches, method="whitened")
  assert set(report.plain) == {"raw"} and "never reached Linear.__call__" in report.plain["raw"]
