"""``nn.Embed``: the embedding E (vocab, features) as M = Eᵀ (features × vocab); the lookup and ``attend`` (tied
logits) share its factors; runs the kernel way; statistics: token counts (the lookup's one-hot input)."""

from __future__ import annotations

import math

import flax.linen as nn

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.linen.kinds.base import Kind, register


class EmbedKind(Kind):
  """``nn.Embed``: a lookup costs no MACs; ``attend`` applies Eᵀ's transpose (m and k swap roles)."""

  layer, kernel_name = nn.Embed, "embedding"

  def view(self, module, kernel_shape, decomposition, call=None):
    """``simple_view((vocab, features), 0, 1)``."""
    return simple_view(tuple(int(d) for d in kernel_shape), 0, 1)

  def moments(self, module, x, view):
    """diag(token counts), counts, number of ids (``calibration.embed_moments``)."""
    return calibration.embed_moments(x, view.matrix_shape[1])

  def macs(self, module, method, y_shape, view):
    """A lookup: (0, y.size / m); ``attend``: (y.size·m, y.size / k)."""
    m, k = view.matrix_shape
    out = math.prod(y_shape)
    return (out * m, out // k) if method == "attend" else (0, out // m)


KIND = register(EmbedKind())

__all__ = ["EmbedKind", "KIND"]
