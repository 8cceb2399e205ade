"""``nn.Conv`` (and the zoo's ``ConvSVD``): kernel (*k, c/g, n) viewed per group as n/g × ∏k·c/g ('channel') or,
for 2-D, kw·n × kh·c ('spatial'); a plain 2-D ``nn.Conv`` runs natively as ``ConvSVD`` computes it, the others
(1-D/3-D, grouped, dilated) the kernel way; statistics: the im2col (or column) patches."""

from __future__ import annotations

import math

import flax.linen as nn
import numpy as np

from jaxsvd.core import calibration, factors, svd
from jaxsvd.core.matrix_view import conv_view
from jaxsvd.linen import conversion, layers
from jaxsvd.linen.kinds.base import Kind, register


def _ones(v) -> bool:
  return v is None or all(int(d) == 1 for d in np.ravel(v))


def native_conv(module: nn.Conv, view, x, rank, settings):
  """A plain 2-D ``nn.Conv`` as ``jaxsvd.linen.ConvSVD`` computes it.

  Creates (or reads) U, s, V and, with ``use_bias``, the bias in ``module``'s scope.

  Args:
    module: the ``nn.Conv`` being called.
    view: its ``MatrixView`` (``conv_view((kh, kw, c, features), 1, decomposition)``).
    x: its NHWC input (batch, H, W, c).
    rank: r, or None for full rank.
    settings: the ``SVDModel`` (its ``mode``, ``sigma``, ``init_scheme`` and ``decomposition`` are read).

  Returns:
    The (batch, H', W', features) output, bias included, in ``module.dtype`` (None: the promoted dtype).
  """
  kernel_shape = view.kernel_shape
  kernel_size, strides = kernel_shape[:2], conversion.pair(module.strides)
  U, s, V = conversion.native_factors(module, view, rank, settings)
  pads = factors.conv_pads(x.shape[1:3], kernel_size, strides, module.padding)
  return conversion.native_output(module, svd.conv_svd_apply(x, U, s, V, kernel_shape, strides, pads,
                                                             settings.decomposition, settings.mode, module.dtype))


class ConvKind(Kind):
  """``nn.Conv``: groups are a stack axis of its view; a ``mask`` leaves it dense."""

  layer, svd_layer = nn.Conv, layers.ConvSVD

  def view(self, module, kernel_shape, decomposition, call=None):
    """``conv_view(kernel shape, feature_group_count, decomposition)``."""
    return conv_view(tuple(int(d) for d in kernel_shape), module.feature_group_count, decomposition)

  def native(self, module, x) -> bool:
    """Exactly ``nn.Conv`` on a 4-D (NHWC) input, 2-D kernel, one group, no mask or dilation, explicit / 'SAME' /
    'VALID' padding."""
    if type(module) is not nn.Conv or getattr(x, "ndim", 0) != 4:
      return False
    return (len(np.ravel(module.kernel_size)) == 2 and module.feature_group_count == 1 and module.mask is None
            and _ones(module.kernel_dilation) and _ones(module.input_dilation)
            and (not isinstance(module.padding, str) or module.padding in ("SAME", "VALID")))

  def native_call(self, module, x, rank, settings):
    """``native_conv``."""
    view = conv_view((*(int(d) for d in np.ravel(module.kernel_size)), x.shape[-1], module.features), 1,
                     settings.decomposition)
    return view, native_conv(module, view, x, rank, settings)

  def native_layer(self, module, rank, settings):
    """A ``ConvSVD`` with the layer's settings, for exactly ``nn.Conv``."""
    if type(module) is not nn.Conv:
      return None
    return layers.ConvSVD(module.features, tuple(np.ravel(module.kernel_size)), conversion.pair(module.strides),
                          module.padding, rank=rank, use_bias=module.use_bias, mode=settings.mode,
                          decomposition=settings.decomposition, sigma=settings.sigma,
                          init_scheme=settings.init_scheme, dtype=module.dtype, parent=None)

  def native_cost(self, module, x):
    """``factors.conv_macs`` of one example: dense, or ``ConvSVD``'s cheaper execution and its params."""
    kh, kw = module.kernel_size
    strides = conversion.pair(module.strides)
    kernel_shape = (kh, kw, x.shape[-1], module.features)
    pads = factors.conv_pads(x.shape[1:3], (kh, kw), strides, module.padding)
    dense_params, bias = math.prod(kernel_shape), (module.features if module.use_bias else 0)
    if not isinstance(module, layers.ConvSVD):
      return (factors.conv_macs(1, x.shape[1:3], kernel_shape, strides, pads, 1, "channel")["dense"],
              dense_params + bias)
    rows, cols = factors.matrix_shape(kernel_shape, module.decomposition)
    r = module.rank or min(rows, cols)
    macs = factors.conv_macs(1, x.shape[1:3], kernel_shape, strides, pads, r, module.decomposition)
    return min(macs["factored"], macs["dense"]), min(r * (rows + cols), dense_params) + bias

  def moments(self, module, x, view):
    """The moments of its patches (``calibration.conv_rows``); None for 'CIRCULAR'/'CAUSAL' padding."""
    rows = calibration.conv_rows(module, x, view)
    return None if rows is None else calibration.row_moments(rows)

  def deploy_geometry(self, module, x):
    """(kernel shape, strides, pads) of a 2-D conv on NHWC input with one group, no dilation or mask, 'SAME' /
    'VALID' / explicit padding (``ConvSVD`` too); None otherwise."""
    pair = lambda v: (v,) * 2 if isinstance(v, int) else tuple(np.ravel(v).tolist())  # noqa: E731
    if x.ndim != 4 or len(pair(module.kernel_size)) != 2:
      return None
    if isinstance(module, nn.Conv) and not (_ones(module.kernel_dilation) and module.mask is None
                                            and _ones(module.input_dilation) and module.feature_group_count == 1):
      return None
    if isinstance(module.padding, str) and module.padding not in ("SAME", "VALID"):
      return None
    kernel_size, strides = pair(module.kernel_size), pair(module.strides or 1)
    pads = tuple(tuple(p) for p in factors.conv_pads(x.shape[1:3], kernel_size, strides, module.padding))
    return (*kernel_size, x.shape[-1], module.features), strides, pads


KIND = register(ConvKind())

__all__ = ["native_conv", "ConvKind", "KIND"]
