"""``nn.ConvTranspose``: kernel (*k, c, n) in the channel view n × ∏k·c ('spatial' for a 2-D kernel:
kw·n × kh·c); runs the kernel way (its own ``lax.conv_transpose`` on the rebuilt kernel); no statistics; its dense
MACs are y.size·k / ∏strides (a 2-D kernel: each output meets about ∏k / ∏s of the kernel's taps)."""

from __future__ import annotations

import math

import flax.linen as nn

from jaxsvd.core.matrix_view import conv_view
from jaxsvd.linen import conversion
from jaxsvd.linen.kinds.base import Kind, register


class ConvTransposeKind(Kind):
  """``nn.ConvTranspose``; a ``mask`` leaves it dense."""

  layer = nn.ConvTranspose

  def view(self, module, kernel_shape, decomposition, call=None):
    """``conv_view(kernel shape, 1, decomposition)``."""
    return conv_view(tuple(int(d) for d in kernel_shape), 1, decomposition)

  def macs(self, module, method, y_shape, view):
    """(y.size·k / ∏strides for a 2-D kernel, else y.size·k; y.size / m)."""
    m, k = view.matrix_shape
    out = math.prod(y_shape)
    dense = out * k // math.prod(conversion.pair(module.strides or 1)) if len(view.kernel_shape) == 4 else out * k
    return dense, out // m


KIND = register(ConvTransposeKind())

__all__ = ["ConvTransposeKind", "KIND"]
