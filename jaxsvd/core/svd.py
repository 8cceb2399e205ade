"""The SVD math every framework shares: W = U·diag(s)·Vᵀ, its inits and its two executions (no flax module).

``sigma`` picks how s enters the kernel:
  signed: W = U·diag(s)·Vᵀ (s may be negative);
  abs:    W = U·diag(|s|)·Vᵀ — the official code's training forward (U·√|s|)·(V·√|s|)ᵀ, the same function
          of (U, s, V). |s| is folded into one factor instead of √|s| into both, so the gradient stays finite at
          s = 0: ∂W/∂s_i = sign(s_i)·u_i·v_iᵀ, with JAX's subgradient d|s|/ds = 1 at s = 0 (the official
          √|s| in both factors has d√x/dx = ∞ there: torch gives NaN if an s hits 0 exactly).
``init`` picks the initialization:
  svd_of_he: (U, s, V) from the SVD of a He-normal kernel (``svd_init``);
  official:  the official code's: U, V Kaiming-normal as torch lays them out, s ~ N(0, 1) (``official_init``).
Execution modes (same outputs to float tolerance): reconstruct (one conv/matmul with the rebuilt kernel), factored
(the two factors, s folded into the V factor), auto (fewer ``CHANNEL_QUANTUM``-quantized MACs at the traced shape).
The linen modules are ``jaxsvd.linen.layers``, the NNX ones ``jaxsvd.nnx.layers``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxsvd.core.factors import (
  CHANNEL_QUANTUM,
  choose_mode,
  conv,
  conv_macs,
  dense_macs,
  factored_conv,
  factors_to_kernel,
  kernel_to_matrix,
  matmul,
  matrix_shape,
)
from jaxsvd.core.validate import check_choice

MODES = ("reconstruct", "factored", "auto")
DECOMPOSITIONS = ("channel", "spatial")
SIGMAS = ("signed", "abs")
INITS = ("svd_of_he", "official")
# The dtypes convs and matmuls may run in (``compute_dtype``); params, optimizer state, BN statistics, the loss and
# the regularizers stay float32 and products are summed in float32 (``factors.accumulation_dtype``).
COMPUTE_DTYPES = ("float32", "bfloat16")

default_kernel_init = jax.nn.initializers.he_normal()


def svd_init(key, kernel_shape, decomposition, rank, kernel_init=default_kernel_init):
  """(U, s, V) from the SVD of a kernel drawn from ``kernel_init`` (He-normal by default).

  At full rank the reconstructed kernel *is* the draw, so its distribution equals the dense
  layer's init. Below full rank s is rescaled so ‖W_r‖_F = ‖W‖_F (output variance preserved):
  s_r = s[:r]·√(Σᵢ sᵢ² / Σ_{i<r} sᵢ²).

  Args:
    key: PRNG key of the kernel draw.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' matrix view.
    rank: r, the number of leading singular triplets kept.
    kernel_init: initializer ``(key, shape, dtype)``; the kernel is drawn in float32.

  Returns:
    (U (rows, r), s (r,), V (cols, r)), with (rows, cols) = ``matrix_shape(kernel_shape, decomposition)``.
  """
  kernel = kernel_init(key, tuple(kernel_shape), jnp.float32)
  u, s, vt = jnp.linalg.svd(kernel_to_matrix(kernel, decomposition), full_matrices=False)
  s_r = s[:rank] * jnp.sqrt(jnp.sum(s**2) / jnp.maximum(jnp.sum(s[:rank] ** 2), 1e-30))
  return u[:, :rank], s_r, vt[:rank].T


def official_init(key, kernel_shape, decomposition, rank):
  """(U, s, V) as the official ``SVD_Conv2d`` initializes them, in jaxsvd's layout.

  torch's ``kaiming_normal_`` on a 2-D (a, b) tensor draws N(0, 2 / b). The official code holds channel-wise
  N (n, r) and C (r, c·kh·kw), spatial-wise N (c·kh, r) and C (r, n·kw), and Sigma ~ N(0, 1). In jaxsvd's
  layout (rows permuted, which leaves an i.i.d. draw's distribution unchanged):
    channel (and Dense): U (n, r) ~ N(0, 2/r),     V (kh·kw·c, r) ~ N(0, 2/(kh·kw·c));
    spatial:             U (kw·n, r) ~ N(0, 2/(kw·n)), V (kh·c, r) ~ N(0, 2/r).

  Args:
    key: PRNG key.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' matrix view.
    rank: r.

  Returns:
    (U (rows, r), s (r,), V (cols, r)) in float32.
  """
  rows, cols = matrix_shape(kernel_shape, decomposition)
  spatial = len(kernel_shape) == 4 and decomposition == "spatial"
  u_var, v_var = (2.0 / rows, 2.0 / rank) if spatial else (2.0 / rank, 2.0 / cols)
  ku, ks, kv = jax.random.split(key, 3)
  normal = lambda k, shape: jax.random.normal(k, shape, jnp.float32)  # noqa: E731
  return normal(ku, (rows, rank)) * jnp.sqrt(u_var), normal(ks, (rank,)), normal(kv, (cols, rank)) * jnp.sqrt(v_var)


def effective_s(s, sigma: str):
  """The diagonal the kernel uses: s ('signed') or |s| ('abs', the official forward; see the module doc).

  Args:
    s: the singular values (*L, r), any shape.
    sigma: 'abs' for |s|; any other value ('signed') leaves ``s`` as is.

  Returns:
    ``jnp.abs(s)`` if ``sigma == 'abs'``, else ``s`` unchanged (same shape).
  """
  return jnp.abs(s) if sigma == "abs" else s


def dense_svd_apply(x, U, s, V, features: int, mode: str, dtype=None):
  """y = x·V·diag(s)·Uᵀ, as one matmul with the rebuilt kernel or as two (``mode``, 'auto' by MACs).

  With a compute ``dtype`` the kernel W = V·diag(s)·Uᵀ (reconstruct) or V·diag(s) (factored) is formed in the factors'
  dtype (float32) and cast once; every matmul casts its operands to ``dtype`` and sums in float32
  (``factors.accumulation_dtype``).

  Args:
    x: (..., c) input.
    U: (n, r).
    s: (r,).
    V: (c, r).
    features: n.
    mode: 'reconstruct', 'factored' or 'auto' (fewer ``CHANNEL_QUANTUM``-quantized MACs, see ``dense_macs``).
    dtype: the compute dtype (e.g. bfloat16); None: the operands as given.

  Returns:
    (..., n) output, without bias (in the accumulation dtype when ``dtype`` is given).
  """
  kernel_shape = (x.shape[-1], features)
  batch = max(1, x.size // x.shape[-1])
  if choose_mode(mode, dense_macs(batch, x.shape[-1], features, s.shape[0], CHANNEL_QUANTUM)) == "reconstruct":
    return matmul(x, factors_to_kernel(U, s, V, kernel_shape), dtype)
  return matmul(matmul(x, V * s, dtype), U.T, dtype)


def conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, decomposition: str, mode: str, dtype=None):
  """NHWC conv with the kernel U·diag(s)·Vᵀ: one conv with the rebuilt kernel or two (``mode``, 'auto' by MACs).

  With a compute ``dtype`` the kernel is rebuilt in the factors' dtype (float32) and cast once; every conv casts
  its operands to ``dtype`` and sums in float32 (``factors.accumulation_dtype``), as in ``dense_svd_apply``.

  Args:
    x, U, s, V, kernel_shape, strides, pads, decomposition: as in ``factors.factored_conv``.
    mode: 'reconstruct', 'factored' or 'auto' (fewer ``CHANNEL_QUANTUM``-quantized MACs, see ``conv_macs``).
    dtype: the compute dtype (e.g. bfloat16); None: the operands as given.

  Returns:
    (N, Ho, Wo, n) output, without bias (in the accumulation dtype when ``dtype`` is given).
  """
  costs = conv_macs(x.shape[0], x.shape[1:3], kernel_shape, strides, pads, s.shape[0], decomposition, CHANNEL_QUANTUM)
  if choose_mode(mode, costs) == "reconstruct":
    return conv(x, factors_to_kernel(U, s, V, kernel_shape, decomposition), strides, pads, dtype)
  return factored_conv(x, U, s, V, kernel_shape, strides, pads, decomposition, dtype)


def compute_dtype(name: str):
  """The layers' ``dtype`` for a ``compute_dtype`` name: None for 'float32' (the operands as given, the float32
  program unchanged), else the jnp dtype.

  Args:
    name: one of ``COMPUTE_DTYPES``.

  Returns:
    None or e.g. ``jnp.bfloat16``.

  Raises:
    ValueError: if ``name`` is not one of ``COMPUTE_DTYPES``.
  """
  check_choice("compute_dtype", name, COMPUTE_DTYPES)
  return None if name == "float32" else jnp.dtype(name)


def cast(dtype, *xs):
  """``xs`` in ``dtype`` (None: unchanged).

  Args:
    dtype: the target dtype, or None.
    *xs: arrays.

  Returns:
    The tuple of ``xs``, each cast to ``dtype``.
  """
  return xs if dtype is None else tuple(x.astype(dtype) for x in xs)


__all__ = ["COMPUTE_DTYPES", "DECOMPOSITIONS", "INITS", "MODES", "SIGMAS", "cast", "compute_dtype", "conv_svd_apply",
           "default_kernel_init", "dense_svd_apply", "effective_s", "official_init", "svd_init"]
