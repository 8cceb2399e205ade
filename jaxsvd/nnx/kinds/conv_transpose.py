"""``nnx.ConvTranspose`` (1-D/2-D) → ``ConvTransposeSVD``: the kind and its SVD layer, in one module.

``nnx.ConvTranspose`` is ``lax.conv_transpose``: a convolution, with window strides 1, of the input dilated by
``strides`` (``lhs_dilation``), padded by ``transpose_pads`` ('SAME'/'VALID' as lax derives them from the kernel,
explicit pads as given), with the kernel (*k, c, n) — or, with ``transpose_kernel``, the stored kernel (*k, n, c)
flipped along its spatial axes and with its channel axes swapped. Matrix view (U on the output side), in the stored
kernel's own shape:

  kernel (*k, c, n)                  M = n × ∏k·c: the channel view (``conv_view``)
  transpose_kernel, kernel (*k, n, c) M = n × ∏k·c, V's rows (*k, c) in the stored (unflipped) order
Either way M is the effective kernel's channel view up to a permutation of its columns, so its singular values,
and its truncated SVD, are the same. A 2-D transposed conv has no 'spatial' view here: it is factored in the
channel view whatever ``decomposition`` says (and records none in checkpoints).

Executions: ``reconstruct`` rebuilds the stored kernel and runs the one dilated conv; ``factored`` runs it with
V·diag(s) as a (*k, c, r) kernel, then U as an r → n matmul; ``auto`` picks the fewer MACs (``transpose_macs``).
Statistics (``transpose_rows``): the patches of the dilated, padded input the kernel meets at every output position,
in V's row order (data-aware compression measures this kind like a conv).
Stays dense with a reason: a >2-D kernel, a mask, 'CIRCULAR' (or any other named) padding.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding

from jaxsvd.core import calibration, factors
from jaxsvd.core.matrix_view import MatrixView, conv_view
from jaxsvd.nnx import layers, params, view_layers
from jaxsvd.nnx.kinds.base import Kind, layer_args, register
from jaxsvd.nnx.surface import KernelAttribute

_SPECS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def per_axis(value, nd: int) -> tuple[int, ...]:
  """``strides`` / ``kernel_dilation`` as one int per spatial axis (None means 1).

  Args:
    value: None, an int or a sequence of ints.
    nd: the number of spatial axes.

  Returns:
    The tuple.
  """
  value = 1 if value is None else value
  return (int(value),) * nd if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)


def transpose_view(kernel_shape, transpose_kernel: bool) -> MatrixView:
  """The channel view of a transposed conv's stored kernel (module doc).

  Args:
    kernel_shape: (*k, c, n), or (*k, n, c) with ``transpose_kernel``.
    transpose_kernel: the layer's flag.

  Returns:
    The ``MatrixView``: n × ∏k·c.
  """
  shape = tuple(int(d) for d in kernel_shape)
  nd = len(shape) - 2
  if transpose_kernel:
    return MatrixView(shape, shape, (), (nd,), (*range(nd), nd + 1))
  return conv_view(shape, 1, "channel")


def transpose_pads(kernel_size, strides, dilation, padding) -> list[tuple[int, int]]:
  """The (low, high) padding ``lax.conv_transpose`` gives the dilated input, per spatial axis.

  Args:
    kernel_size: the spatial kernel size.
    strides: one stride per axis (the input dilation).
    dilation: one kernel dilation per axis.
    padding: 'SAME', 'VALID', an int, or per-axis ints / (low, high) pairs (``nnx.ConvTranspose``'s forms).

  Returns:
    [(low, high), ...].
  """
  padding = canonicalize_padding(padding, len(kernel_size))
  if not isinstance(padding, str):
    return [tuple(int(d) for d in p) for p in padding]
  pads = []
  for k, s, d in zip(kernel_size, strides, dilation):
    k = (k - 1) * d + 1
    if padding == "SAME":
      total, low = k + s - 2, (k - 1 if s > k - 1 else int(np.ceil((k + s - 2) / 2)))
    else:
      total, low = k + s - 2 + max(k - s, 0), k - 1
    pads.append((low, total - low))
  return pads


def dilated_conv(x, kernel, strides, pads, dilation, dtype=None):
  """The transposed conv's one convolution: ``x`` (N, *spatial, c) dilated by ``strides``, padded, with ``kernel``.

  Args:
    x: the input.
    kernel: (*k, c, o) in the effective (flipped, swapped) layout.
    strides, pads, dilation: as ``transpose_pads``' arguments and result.
    dtype: the compute dtype (both operands cast, products summed in ``factors.accumulation_dtype``), or None.

  Returns:
    (N, *spatial', o).
  """
  if dtype is not None:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
  nd = x.ndim - 2
  return jax.lax.conv_general_dilated(x, kernel, (1,) * nd, pads, lhs_dilation=strides, rhs_dilation=dilation,
                                      dimension_numbers=_SPECS[nd],
                                      preferred_element_type=factors.accumulation_dtype(dtype))


def transpose_macs(x_shape, kernel_size, c: int, n: int, strides, pads, dilation, rank: int) -> dict[str, int]:
  """MACs of one call: each input position meets ∏k·c·n kernel entries (dense); factored ∏k·c·r per input
  position plus r·n per output position; reconstruct is dense plus the rebuild ∏k·c·n·r.

  Args:
    x_shape: the input's shape (*batch, *spatial, c).
    kernel_size, strides, pads, dilation: the layer's geometry (``transpose_pads``).
    c, n: input and output channels.
    rank: r.

  Returns:
    {'dense', 'reconstruct', 'factored'}.
  """
  nd = len(kernel_size)
  spatial = x_shape[len(x_shape) - nd - 1:-1]
  batch = math.prod(x_shape[:len(x_shape) - nd - 1])
  out = [(i - 1) * s + lo + hi - (k - 1) * d + 1 for i, s, (lo, hi), k, d in zip(spatial, strides, pads, kernel_size,
                                                                                  dilation)]
  inputs, outputs, k = batch * math.prod(spatial), batch * math.prod(out), math.prod(kernel_size) * c
  dense = inputs * k * n
  return {"dense": dense, "reconstruct": dense + k * n * rank, "factored": inputs * k * rank + outputs * rank * n}


def transpose_rows(module, x) -> jax.Array:
  """The vectors a transposed conv's matrix multiplies: at every output position, the window of the dilated, padded
  input, as (N, ∏k·c) rows in V's order ((*k, c); flipped back along k with ``transpose_kernel``).

  Args:
    module: an ``nnx.ConvTranspose`` or ``ConvTransposeSVD``.
    x: its input (*batch, *spatial, c).

  Returns:
    The rows.
  """
  nd, kernel_size = len(module.kernel_size), tuple(module.kernel_size)
  strides, dilation = per_axis(module.strides, nd), per_axis(module.kernel_dilation, nd)
  pads = transpose_pads(kernel_size, strides, dilation, module.padding)
  c = x.shape[-1]
  lhs = jnp.moveaxis(x.reshape(-1, *x.shape[x.ndim - nd - 1:]), -1, 1)  # (B, c, *spatial)
  patches = jax.lax.conv_general_dilated_patches(lhs, kernel_size, (1,) * nd, pads, lhs_dilation=strides,
                                                 rhs_dilation=dilation, precision=jax.lax.Precision.HIGHEST)
  b, out = patches.shape[0], patches.shape[2:]
  p = patches.reshape(b, c, *kernel_size, *out)  # features channel-major
  p = jnp.transpose(p, (0, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd), 1))  # (B, *out, *k, c)
  if module.transpose_kernel:
    p = jnp.flip(p, tuple(range(1 + nd, 1 + 2 * nd)))
  return p.reshape(-1, math.prod(kernel_size) * c)


class ConvTransposeSVD(layers.SVDModule):
  """``nnx.ConvTranspose`` (1-D or 2-D, no mask; 'SAME', 'VALID' or explicit padding; any strides and kernel
  dilation; either ``transpose_kernel``) as U (n, r), s (r,), V (∏k·c, r) of its kernel's channel view.

  Built from a dense ``kernel`` (its truncated SVD) or, with ``rngs``, from the truncated SVD of a ``kernel_init``
  draw. ``kernel`` reads U·diag(s)·Vᵀ in ``kernel_shape``."""

  kernel = KernelAttribute()
  dense_kernel = view_layers.view_kernel

  def __init__(self, in_features: int, out_features: int, kernel_size, strides=None, *, padding: Any = "SAME",
               kernel_dilation=None, transpose_kernel: bool = False, rank: int | None = None, mode: str = "auto",
               use_bias: bool = True, dtype: Any = None, param_dtype: Any = jnp.float32,
               kernel_init=layers.default_kernel_init, bias_init=layers.zeros, kernel=None, bias=None,
               rngs: nnx.Rngs | None = None, kernel_metadata=None, bias_metadata=None, sigma: str = "signed"):
    self._check(mode, sigma=sigma)
    self.kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(self.kernel_size) not in (1, 2):
      raise ValueError(f"ConvTransposeSVD: kernel_size={kernel_size!r} is not 1-D or 2-D")
    self.in_features, self.out_features, self.strides, self.padding = in_features, out_features, strides, padding
    self.kernel_dilation, self.transpose_kernel, self.use_bias = kernel_dilation, transpose_kernel, use_bias
    self.mode, self.dtype, self.param_dtype = mode, dtype, param_dtype
    channels = (out_features, in_features) if transpose_kernel else (in_features, out_features)
    self.kernel_shape = (*self.kernel_size, *channels)
    self.view = transpose_view(self.kernel_shape, transpose_kernel)
    if (kernel is None or (use_bias and bias is None)) and rngs is None:
      raise ValueError("ConvTransposeSVD: pass rngs= (random init) or kernel= and bias= (decompose a dense layer)")
    kernel = kernel_init(rngs.params(), self.kernel_shape, param_dtype) if kernel is None else kernel
    U, s, V = view_layers.view_factors(self.view, kernel, rank, "ConvTransposeSVD")
    self.U, self.s, self.V = (params.make_param(a, param_dtype, m)
                              for a, m in zip((U, s, V), view_layers.factor_metadata(self.view, kernel_metadata)))
    if use_bias:
      bias = bias_init(rngs.params(), (out_features,), param_dtype) if bias is None else bias
      self.bias = params.make_param(bias, param_dtype, params.sharding_metadata(bias_metadata))
    else:
      self.bias = nnx.data(None)

  def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]]]:
    """(strides, kernel dilation, pads) per spatial axis (``transpose_pads``)."""
    nd = len(self.kernel_size)
    strides, dilation = per_axis(self.strides, nd), per_axis(self.kernel_dilation, nd)
    return strides, dilation, transpose_pads(self.kernel_size, strides, dilation, self.padding)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    """(*batch, *spatial, c) → (*batch, *spatial', n), as ``nnx.ConvTranspose``."""
    layers.no_sharding(self, out_sharding)
    nd = len(self.kernel_size)
    batch_shape = inputs.shape[:inputs.ndim - nd - 1]
    x, U, s, V, b, dtype = self._operands(inputs.reshape(-1, *inputs.shape[inputs.ndim - nd - 1:]))
    strides, dilation, pads = self.geometry()
    mode = self.mode
    if mode == "auto":
      costs = transpose_macs(x.shape, self.kernel_size, self.in_features, self.out_features, strides, pads, dilation,
                             self.rank)
      mode = "factored" if costs["factored"] < costs["reconstruct"] else "reconstruct"
    if mode == "reconstruct":
      kernel = self.view.to_kernel(U, s, V)
      if self.transpose_kernel:  # flip the spatial axes, swap the channel axes (as lax.conv_transpose does)
        kernel = jnp.swapaxes(jnp.flip(kernel, tuple(range(nd))), -1, -2)
      y = dilated_conv(x, kernel, strides, pads, dilation, dtype)
    else:
      vs = (V * s).reshape(*self.kernel_size, self.in_features, -1)
      vs = jnp.flip(vs, tuple(range(nd))) if self.transpose_kernel else vs
      y = factors.matmul(dilated_conv(x, vs, strides, pads, dilation, dtype), U.T, dtype)
    y = self._output(y, b)
    return y.reshape(*batch_shape, *y.shape[1:])


class ConvTransposeKind(Kind):
  """``nnx.ConvTranspose`` (module doc)."""

  layer, svd_layer = nnx.ConvTranspose, ConvTransposeSVD

  def reasons(self, module) -> list[str]:
    """>2-D kernels, a mask, named paddings other than 'SAME'/'VALID'."""
    nd = len(module.kernel_size)
    padding = canonicalize_padding(module.padding, nd)
    checks = {f"{nd}-D kernel (1-D and 2-D transposed convs convert)": nd > 2, "a mask": module.mask is not None,
              f"padding={module.padding!r} (SAME, VALID and explicit pads convert)":
                  isinstance(padding, str) and padding not in ("SAME", "VALID")}
    return [why for why, bad in checks.items() if bad]

  def view(self, module, decomposition: str):
    """``transpose_view`` (the channel view whatever ``decomposition``)."""
    return transpose_view(tuple(module.kernel.shape), module.transpose_kernel)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """A ``ConvTransposeSVD`` (``Kind.to_svd``)."""
    return ConvTransposeSVD(module.in_features, module.out_features, module.kernel_size, module.strides,
                            padding=module.padding, kernel_dilation=module.kernel_dilation,
                            transpose_kernel=module.transpose_kernel, **layer_args(module, rank, mode, sigma))

  def moments(self, module, x, view):
    """The moments of ``transpose_rows``."""
    return calibration.row_moments(transpose_rows(module, x))

  def macs(self, module, x_shape, rank=None):
    """``transpose_macs``' dense and factored counts."""
    nd = len(module.kernel_size)
    strides, dilation = per_axis(module.strides, nd), per_axis(module.kernel_dilation, nd)
    pads = transpose_pads(module.kernel_size, strides, dilation, module.padding)
    r = min(math.prod(module.kernel_size) * module.in_features, module.out_features) if rank is None else rank
    costs = transpose_macs(tuple(x_shape), module.kernel_size, module.in_features, module.out_features, strides, pads,
                           dilation, r)
    return {"dense": costs["dense"], "factored": costs["factored"]}

  def probe(self, module) -> jax.ShapeDtypeStruct:
    """(1, *kernel_size, in_features)."""
    return jax.ShapeDtypeStruct((1, *module.kernel_size, module.in_features), jnp.float32)


KIND = register(ConvTransposeKind())

__all__ = ["per_axis", "transpose_view", "transpose_pads", "dilated_conv", "transpose_macs", "transpose_rows",
           "ConvTransposeSVD", "ConvTransposeKind", "KIND"]
