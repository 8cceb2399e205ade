"""SVD-form Dense and Conv layers: W = U · diag(s) · Vᵀ.

Matrix views of a kernel (kh, kw, c, n) — U is always on the output side:
  channel-wise: M is n × (kh·kw·c); U (n, r), V (kh·kw·c, r);
  spatial-wise: M is (kw·n) × (kh·c); U (kw·n, r), V (kh·c, r).
A Dense kernel (c, n) is the channel view with kh = kw = 1.

Execution modes (same outputs to float tolerance):
  reconstruct: build the kernel from (U, s, V) and run one conv/matmul;
  factored:    run the two factors (s folded into the V factor);
  auto:        pick whichever costs fewer MACs at the traced input shape (output channels counted in
               multiples of CHANNEL_QUANTUM, as vector units process them).
s is folded into the V factor (not √s into both) so that s may change sign and the
gradient stays finite at s = 0; `export.factored` gives the symmetric √|s| form.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxsvd.structure import check_rank
from jaxsvd.validate import check_choice

MODES = ("reconstruct", "factored", "auto")
DECOMPOSITIONS = ("channel", "spatial")
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

default_kernel_init = nn.initializers.he_normal()


def matrix_shape(kernel_shape: Sequence[int], decomposition: str) -> tuple[int, int]:
  """(rows, cols) of the matrix view M of a kernel; rows are the U side."""
  if len(kernel_shape) == 2:
    return kernel_shape[1], kernel_shape[0]
  kh, kw, c, n = kernel_shape
  return (n, kh * kw * c) if decomposition == "channel" else (kw * n, kh * c)


def kernel_to_matrix(kernel: jax.Array, decomposition: str = "channel") -> jax.Array:
  if kernel.ndim == 2:
    return kernel.T
  kh, kw, c, n = kernel.shape
  if decomposition == "channel":
    return kernel.reshape(kh * kw * c, n).T
  return kernel.transpose(1, 3, 0, 2).reshape(kw * n, kh * c)


def factors_to_kernel(U, s, V, kernel_shape: Sequence[int], decomposition: str = "channel") -> jax.Array:
  """Kernel of shape ``kernel_shape`` whose matrix view is U·diag(s)·Vᵀ."""
  m_t = (V * s) @ U.T  # Mᵀ: (cols, rows)
  if len(kernel_shape) == 2 or decomposition == "channel":
    return m_t.reshape(kernel_shape)
  kh, kw, c, n = kernel_shape
  return m_t.reshape(kh, c, kw, n).transpose(0, 2, 1, 3)


def svd_init(key, kernel_shape, decomposition, rank, kernel_init=default_kernel_init):
  """(U, s, V) from the SVD of a kernel drawn from ``kernel_init`` (He-normal by default).

  At full rank the reconstructed kernel *is* the draw, so its distribution equals the dense
  layer's init. Below full rank s is rescaled so ‖W_r‖_F = ‖W‖_F (output variance preserved).
  """
  kernel = kernel_init(key, tuple(kernel_shape), jnp.float32)
  u, s, vt = jnp.linalg.svd(kernel_to_matrix(kernel, decomposition), full_matrices=False)
  s_r = s[:rank] * jnp.sqrt(jnp.sum(s**2) / jnp.maximum(jnp.sum(s[:rank] ** 2), 1e-30))
  return u[:, :rank], s_r, vt[:rank].T


def conv_pads(spatial_shape, kernel_size, strides, padding) -> list[tuple[int, int]]:
  if isinstance(padding, str):
    check_choice("padding", padding, ("SAME", "VALID"))
    return list(lax.padtype_to_pads(spatial_shape, kernel_size, strides, padding))
  if isinstance(padding, int):
    return [(padding, padding)] * 2
  return [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]


def conv(x, kernel, strides, pads):
  return lax.conv_general_dilated(x, kernel, tuple(strides), pads, dimension_numbers=DIMENSION_NUMBERS)


def conv_out_size(size: int, k: int, stride: int, pad: tuple[int, int]) -> int:
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
  rounded up to ``quantum``: 1 gives true MACs, ``CHANNEL_QUANTUM`` the cost ``auto`` compares)."""
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
  dense = batch * in_features * _up(features, quantum)
  return {"reconstruct": in_features * features * rank + dense,
          "factored": batch * (in_features * _up(rank, quantum) + rank * _up(features, quantum)), "dense": dense}


def choose_mode(mode: str, costs: dict[str, int]) -> str:
  """``mode``, or for 'auto' the execution with the smaller (channel-quantized) MAC count."""
  if mode != "auto":
    return mode
  return "factored" if costs["factored"] < costs["reconstruct"] else "reconstruct"


def svd_params(owner: nn.Module, kernel_shape, rank: int | None, decomposition: str, kernel_init=default_kernel_init):
  """Creates (or reads) params U, s, V of ``kernel_shape`` at ``rank`` in ``owner``'s scope (a compact method)."""
  rows, cols = matrix_shape(kernel_shape, decomposition)
  full = min(rows, cols)
  rank = full if rank is None else rank
  if rank > full:
    raise ValueError(f"{type(owner).__name__}.rank={rank} exceeds min(m, n)={full} for matrix {rows}x{cols}")
  # One draw shared by U, s and V; at apply time the init is only shape-checked (eval_shape).
  key = owner.make_rng("params") if owner.is_initializing() else jax.random.key(0)
  init = lambda i: (lambda _, k: svd_init(k, kernel_shape, decomposition, rank, kernel_init)[i])
  return tuple(owner.param(name, init(i), key) for i, name in enumerate(("U", "s", "V")))


def dense_svd_apply(x, U, s, V, features: int, mode: str):
  """y = x·V·diag(s)·Uᵀ, as one matmul with the rebuilt kernel or as two (``mode``, 'auto' by MACs)."""
  kernel_shape = (x.shape[-1], features)
  batch = max(1, x.size // x.shape[-1])
  if choose_mode(mode, dense_macs(batch, x.shape[-1], features, s.shape[0], CHANNEL_QUANTUM)) == "reconstruct":
    return x @ factors_to_kernel(U, s, V, kernel_shape)
  return (x @ (V * s)) @ U.T


def conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, decomposition: str, mode: str):
  """NHWC conv with the kernel U·diag(s)·Vᵀ: one conv with the rebuilt kernel or two (``mode``, 'auto' by MACs)."""
  costs = conv_macs(x.shape[0], x.shape[1:3], kernel_shape, strides, pads, s.shape[0], decomposition, CHANNEL_QUANTUM)
  if choose_mode(mode, costs) == "reconstruct":
    return conv(x, factors_to_kernel(U, s, V, kernel_shape, decomposition), strides, pads)
  return factored_conv(x, U, s, V, kernel_shape, strides, pads, decomposition)


def cast(dtype, *xs):
  """``xs`` in ``dtype`` (None: unchanged)."""
  return xs if dtype is None else tuple(x.astype(dtype) for x in xs)


def add_bias(owner: nn.Module, y, use_bias: bool, features: int, bias_init, param_dtype=jnp.float32):
  """y + b with b a param 'bias' of ``owner`` (a compact method), or y when ``use_bias`` is False."""
  if not use_bias:
    return y
  return y + owner.param("bias", bias_init, (features,), param_dtype).astype(y.dtype)


class _SVDBase(nn.Module):
  """Shared fields, validation and parameter creation of the SVD layers."""

  def __post_init__(self):
    check_choice(f"{type(self).__name__}.mode", self.mode, MODES)
    check_choice(f"{type(self).__name__}.decomposition", self.decomposition, DECOMPOSITIONS)
    check_rank(f"{type(self).__name__}.rank", self.rank, allow_none=True)
    super().__post_init__()

  def _factors(self, kernel_shape):
    return svd_params(self, kernel_shape, self.rank, self.decomposition, self.kernel_init)

  def _bias(self, y):
    return add_bias(self, y, self.use_bias, self.features, self.bias_init)

  def _cast(self, *xs):
    return cast(self.dtype, *xs)


class DenseSVD(_SVDBase):
  """Dense layer y = x·V·diag(s)·Uᵀ (+ b), i.e. kernel W = V·diag(s)·Uᵀ of shape (in, features)."""

  features: int
  rank: int | None = None
  use_bias: bool = True
  mode: str = "auto"
  decomposition: str = "channel"
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    U, s, V = self._factors((x.shape[-1], self.features))
    x, U, s, V = self._cast(x, U, s, V)
    return self._bias(dense_svd_apply(x, U, s, V, self.features, self.mode))


class ConvSVD(_SVDBase):
  """2-D conv (NHWC, HWIO) whose kernel (kh, kw, c, n) is held as U, s, V (see module doc)."""

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  rank: int | None = None
  decomposition: str = "channel"
  mode: str = "auto"
  use_bias: bool = False
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    strides = tuple(self.strides) if not isinstance(self.strides, int) else (self.strides,) * 2
    kernel_shape = (kh, kw, x.shape[-1], self.features)
    U, s, V = self._factors(kernel_shape)
    x, U, s, V = self._cast(x, U, s, V)
    pads = conv_pads(x.shape[1:3], (kh, kw), strides, self.padding)
    return self._bias(conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, self.decomposition, self.mode))


def factored_conv(x, U, s, V, kernel_shape, strides, pads, decomposition):
  """The two-conv execution: channel = (kh×kw → r) then 1×1; spatial = (kh×1 → r) then (1×kw)."""
  kh, kw, c, n = kernel_shape
  r = s.shape[0]
  if decomposition == "channel":
    h = conv(x, (V * s).reshape(kh, kw, c, r), strides, pads)
    return h @ U.T
  k1 = (V * s).reshape(kh, 1, c, r)
  k2 = U.reshape(kw, n, r).transpose(0, 2, 1)[None]
  h = conv(x, k1, (strides[0], 1), [pads[0], (0, 0)])
  return conv(h, k2, (1, strides[1]), [(0, 0), pads[1]])
