"""Matrix views of kernels and the two executions of W = U·diag(s)·Vᵀ, with their MAC counts (pure functions).

Matrix views of a kernel (kh, kw, c, n) — U is always on the output side:
  channel-wise: M is n × (kh·kw·c); U (n, r), V (kh·kw·c, r);
  spatial-wise: M is (kw·n) × (kh·c); U (kw·n, r), V (kh·c, r).
A Dense kernel (c, n) is the channel view with kh = kw = 1.

  reconstruct: rebuild the kernel from (U, s, V) and run one conv/matmul (``factors_to_kernel``);
  factored:    run the two factors, s folded into the V factor (``factored_conv``);
  ``conv_macs`` / ``dense_macs`` count both, ``choose_mode`` picks for ``mode='auto'``.
The flax modules that hold U, s, V are in ``jaxsvd.linen.layers``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxsvd.core.validate import check_choice

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def matrix_shape(kernel_shape: Sequence[int], decomposition: str) -> tuple[int, int]:
  """(rows, cols) of the matrix view M of a kernel; rows are the U side.

  Args:
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' (ignored for a Dense kernel).

  Returns:
    (n, c) for a Dense kernel; (n, kh·kw·c) for 'channel'; (kw·n, kh·c) for 'spatial'.
  """
  if len(kernel_shape) == 2:
    return kernel_shape[1], kernel_shape[0]
  kh, kw, c, n = kernel_shape
  return (n, kh * kw * c) if decomposition == "channel" else (kw * n, kh * c)


def kernel_to_matrix(kernel: jax.Array, decomposition: str = "channel") -> jax.Array:
  """The matrix view M of a kernel (rows on the U side), of shape ``matrix_shape(kernel.shape, decomposition)``.

  Args:
    kernel: a Dense kernel K (c, n) or an HWIO conv kernel K (kh, kw, c, n).
    decomposition: 'channel': M[j, (h, w, i)] = K[h, w, i, j]; 'spatial': M[(w, j), (h, i)] = K[h, w, i, j].
      Ignored for a Dense kernel (M = Kᵀ).

  Returns:
    M: (n, c) for a Dense kernel; (n, kh·kw·c) for 'channel'; (kw·n, kh·c) for 'spatial'.
  """
  if kernel.ndim == 2:
    return kernel.T
  kh, kw, c, n = kernel.shape
  if decomposition == "channel":
    return kernel.reshape(kh * kw * c, n).T
  return kernel.transpose(1, 3, 0, 2).reshape(kw * n, kh * c)


def factors_to_kernel(U, s, V, kernel_shape: Sequence[int], decomposition: str = "channel") -> jax.Array:
  """Kernel of shape ``kernel_shape`` whose matrix view is U·diag(s)·Vᵀ (the inverse of ``kernel_to_matrix``).

  Args:
    U: (rows, r) output-side factor.
    s: (r,) singular values.
    V: (cols, r) input-side factor.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' matrix view (ignored for a Dense kernel).

  Returns:
    The kernel, of shape ``kernel_shape``.
  """
  m_t = (V * s) @ U.T  # Mᵀ: (cols, rows)
  if len(kernel_shape) == 2 or decomposition == "channel":
    return m_t.reshape(kernel_shape)
  kh, kw, c, n = kernel_shape
  return m_t.reshape(kh, c, kw, n).transpose(0, 2, 1, 3)


def conv_pads(spatial_shape, kernel_size, strides, padding) -> list[tuple[int, int]]:
  """Explicit (low, high) padding of each spatial dimension.

  Args:
    spatial_shape: (H, W) of the input.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: 'SAME' or 'VALID'; an int p (p on both sides of H and W); or a sequence, one entry per spatial
      dimension, of ints p (meaning (p, p)) or (low, high) pairs.

  Returns:
    [(low, high), (low, high)], the padding of H and W.

  Raises:
    ValueError: if ``padding`` is a string other than 'SAME' or 'VALID'.
  """
  if isinstance(padding, str):
    check_choice("padding", padding, ("SAME", "VALID"))
    return list(lax.padtype_to_pads(spatial_shape, kernel_size, strides, padding))
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  return [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]


def accumulation_dtype(dtype):
  """The dtype products are summed in for compute ``dtype``: float32 for a narrower float (bfloat16 has 8 mantissa
  bits, so a long sum of its products would lose most of them), else ``dtype`` itself.

  Args:
    dtype: the compute dtype, or None.

  Returns:
    ``promote_types(dtype, float32)``, or None for None.
  """
  return None if dtype is None else jnp.promote_types(dtype, jnp.float32)


def matmul(a, b, dtype=None):
  """a·b with both operands cast to ``dtype`` and the products summed in ``accumulation_dtype(dtype)``.

  Args:
    a: (..., k) array.
    b: (k, n) array.
    dtype: the compute dtype; None: the operands as given (promoted by ``@``).

  Returns:
    (..., n), in the accumulation dtype (None: the promoted dtype).
  """
  if dtype is None:
    return a @ b
  return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=accumulation_dtype(dtype))


def conv(x, kernel, strides, pads, dtype=None):
  """2-D convolution of an NHWC input with an HWIO kernel (no dilation, one feature group).

  Args:
    x: (N, H, W, c) input.
    kernel: (kh, kw, c, n) kernel.
    strides: (sh, sw).
    pads: [(low, high), (low, high)], the padding of H and W.
    dtype: the compute dtype both operands are cast to, the products summed in ``accumulation_dtype(dtype)``
      (``preferred_element_type``); None: the operands as given.

  Returns:
    (N, Ho, Wo, n) output (in the accumulation dtype when ``dtype`` is given).
  """
  if dtype is not None:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
  return lax.conv_general_dilated(x, kernel, tuple(strides), pads, dimension_numbers=DIMENSION_NUMBERS,
                                  preferred_element_type=accumulation_dtype(dtype))


def conv_out_size(size: int, k: int, stride: int, pad: tuple[int, int]) -> int:
  """Output length of a convolution along one dimension: ⌊(size + low + high − k) / stride⌋ + 1.

  Args:
    size: input length.
    k: kernel length.
    stride: stride.
    pad: (low, high) padding.

  Returns:
    The output length.
  """
  return (size + pad[0] + pad[1] - k) // stride + 1


# `auto` counts output channels in multiples of this: a conv or GEMM to r < 16 channels fills a 16-lane
# f32 vector (AVX-512; GPU MMA tiles are as wide) no better than one to 16. Measured on ResNet layer
# shapes (benchmarks/README.md): raw MACs picked the slower execution by 2.2x summed excess in eval;
# quantized MACs by 0.4x.
CHANNEL_QUANTUM = 16


def _up(channels: int, quantum: int) -> int:
  return -(-channels // quantum) * quantum


def conv_macs(batch, spatial, kernel_shape, strides, pads, rank, decomposition, quantum: int = 1) -> dict[str, int]:
  """MACs of each execution mode of a conv SVD layer at a given input shape (output channel counts
  rounded up to ``quantum``: 1 gives true MACs, ``CHANNEL_QUANTUM`` the cost ``auto`` compares).

  With B the batch, (H, W) the input size, (Ho, Wo) the output size, r the rank and ⌈·⌉ rounding up to ``quantum``:
    dense       = B·Ho·Wo·kh·kw·c·⌈n⌉
    reconstruct = kh·kw·c·n·r + dense                  (rebuild the kernel, then one conv)
    factored    = B·Ho·Wo·(kh·kw·c·⌈r⌉ + r·⌈n⌉)        ('channel')
                  B·(Ho·W·kh·c·⌈r⌉ + Ho·Wo·kw·r·⌈n⌉)    ('spatial')

  Args:
    batch: B.
    spatial: (H, W) of the NHWC input.
    kernel_shape: (kh, kw, c, n) HWIO.
    strides: (sh, sw).
    pads: [(low, high), (low, high)], the padding of H and W.
    rank: r.
    decomposition: 'channel' or 'spatial'.
    quantum: the multiple output channel counts are rounded up to.

  Returns:
    {'reconstruct', 'factored', 'dense'}: MAC counts; 'dense' is one conv with an already-built kernel.
  """
  kh, kw, c, n = kernel_shape
  ho = conv_out_size(spatial[0], kh, strides[0], pads[0])
  wo = conv_out_size(spatial[1], kw, strides[1], pads[1])
  r, nq = _up(rank, quantum), _up(n, quantum)
  rebuild = kh * kw * c * n * rank
  dense = batch * ho * wo * kh * kw * c * nq
  if decomposition == "channel":
    factored = batch * ho * wo * (kh * kw * c * r + rank * nq)
  else:
    factored = batch * (ho * spatial[1] * kh * c * r + ho * wo * kw * rank * nq)
  return {"reconstruct": rebuild + dense, "factored": factored, "dense": dense}


def dense_macs(batch, in_features, features, rank, quantum: int = 1) -> dict[str, int]:
  """MACs of each execution mode of a Dense SVD layer (output channel counts rounded up to ``quantum``).

  With ⌈·⌉ rounding up to ``quantum``: dense = B·c·⌈n⌉; reconstruct = c·n·r + dense; factored = B·(c·⌈r⌉ + r·⌈n⌉).

  Args:
    batch: B, the number of input rows.
    in_features: c.
    features: n.
    rank: r.
    quantum: the multiple output channel counts are rounded up to (1: true MACs; ``CHANNEL_QUANTUM``: the cost
      ``auto`` compares).

  Returns:
    {'reconstruct', 'factored', 'dense'}: MAC counts; 'dense' is one matmul with an already-built kernel.
  """
  dense = batch * in_features * _up(features, quantum)
  return {"reconstruct": in_features * features * rank + dense,
          "factored": batch * (in_features * _up(rank, quantum) + rank * _up(features, quantum)), "dense": dense}


def choose_mode(mode: str, costs: dict[str, int]) -> str:
  """``mode``, or for 'auto' the execution with the smaller (channel-quantized) MAC count.

  Args:
    mode: 'reconstruct', 'factored' or 'auto'.
    costs: MAC counts with keys 'reconstruct' and 'factored' (``conv_macs`` / ``dense_macs``).

  Returns:
    ``mode`` if it is not 'auto'; else 'factored' if it costs strictly fewer MACs, otherwise 'reconstruct'.
  """
  if mode != "auto":
    return mode
  return "factored" if costs["factored"] < costs["reconstruct"] else "reconstruct"


def factored_conv(x, U, s, V, kernel_shape, strides, pads, decomposition, dtype=None):
  """The two-conv execution: channel = (kh×kw → r) then 1×1; spatial = (kh×1 → r) then (1×kw).

  s is folded into the first factor. 'channel': conv with V·diag(s) as a (kh, kw, c, r) kernel, then h·Uᵀ.
  'spatial': conv with V·diag(s) as a (kh, 1, c, r) kernel at stride (sh, 1) padding H only, then conv with U as a
  (1, kw, r, n) kernel at stride (1, sw) padding W only.

  Args:
    x: (N, H, W, c) input.
    U: (n, r) for 'channel', (kw·n, r) for 'spatial'.
    s: (r,).
    V: (kh·kw·c, r) for 'channel', (kh·c, r) for 'spatial'.
    kernel_shape: (kh, kw, c, n) HWIO.
    strides: (sh, sw).
    pads: [(low, high), (low, high)], the padding of H and W.
    decomposition: 'channel' or 'spatial'.
    dtype: the compute dtype (None: as given): V·diag(s) is formed in the factors' dtype, then each conv/matmul casts
      its operands to ``dtype`` and sums in ``accumulation_dtype(dtype)``.

  Returns:
    (N, Ho, Wo, n) output, equal to float tolerance to the conv with the rebuilt kernel.
  """
  kh, kw, c, n = kernel_shape
  r = s.shape[0]
  if decomposition == "channel":
    h = conv(x, (V * s).reshape(kh, kw, c, r), strides, pads, dtype)
    return matmul(h, U.T, dtype)
  k1 = (V * s).reshape(kh, 1, c, r)
  k2 = U.reshape(kw, n, r).transpose(0, 2, 1)[None]
  h = conv(x, k1, (strides[0], 1), [pads[0], (0, 0)], dtype)
  return conv(h, k2, (1, strides[1]), [(0, 0), pads[1]], dtype)


__all__ = ["DIMENSION_NUMBERS", "matrix_shape", "kernel_to_matrix", "factors_to_kernel", "conv_pads",
           "accumulation_dtype", "matmul", "conv", "conv_out_size", "CHANNEL_QUANTUM", "conv_macs", "dense_macs",
           "choose_mode", "factored_conv"]
