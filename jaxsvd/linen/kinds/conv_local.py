"""``nn.ConvLocal``: kernel (*positions, ∏k·c, n), one matrix n × ∏k·c per output position (a stack axis each);
runs the kernel way; no statistics."""

from __future__ import annotations

import flax.linen as nn

from jaxsvd.core.matrix_view import simple_view
from jaxsvd.linen.kinds.base import Kind, register


class ConvLocalKind(Kind):
  """``nn.ConvLocal``; a ``mask`` leaves it dense."""

  layer = nn.ConvLocal

  def view(self, module, kernel_shape, decomposition, call=None):
    """``simple_view(kernel shape, positions, 1)``."""
    shape = tuple(int(d) for d in kernel_shape)
    return simple_view(shape, len(shape) - 2, 1)


KIND = register(ConvLocalKind())

__all__ = ["ConvLocalKind", "KIND"]
