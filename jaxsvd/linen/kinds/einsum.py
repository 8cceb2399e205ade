"""``nn.Einsum``: its kernel as a stack of matrices after grouping its letters (``matrix_view.einsum_view``: letters in
the input and the output are stack axes); the einsum string may come with the call; runs the kernel way; statistics:
the contracted input letters per stack index (``calibration.einsum_rows``) of the string the call used."""

from __future__ import annotations

import flax.linen as nn

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import einsum_view
from jaxsvd.linen.kinds.base import Kind, register


def call_einsum_str(module, call) -> str:
  """The einsum string of a call: its ``einsum_str`` argument (keyword or second positional), else the module's.

  Args:
    module: the ``nn.Einsum``.
    call: (args, kwargs) of the call, or None.

  Returns:
    The string.
  """
  args, kwargs = call or ((), {})
  return kwargs.get("einsum_str", args[1] if len(args) > 1 else None) or module.einsum_str


class EinsumKind(Kind):
  """``nn.Einsum``: left dense, before it runs, when its kernel is not a (stack of) matrix."""

  layer = nn.Einsum

  def reason(self, module, args, kwargs):
    """``einsum_view``'s reason, if any."""
    view = self.view(module, module.shape, "channel", (args, kwargs))
    return view if isinstance(view, str) else None

  def view(self, module, kernel_shape, decomposition, call=None):
    """``einsum_view`` of the call's einsum string (or the reason, a str)."""
    return einsum_view(tuple(int(d) for d in kernel_shape), call_einsum_str(module, call))

  def moments(self, module, x, view):
    """The moments of ``calibration.einsum_rows`` for the module's own ``einsum_str`` (None without one)."""
    return self.call_moments(module, x, view)

  def call_moments(self, module, x, view, call=None):
    """The moments of ``calibration.einsum_rows`` for the string the call used (``call_einsum_str``: the call's
    ``einsum_str`` argument, else the module's), or None when there is none."""
    einsum_str = call_einsum_str(module, call)
    if einsum_str is None:
      return None
    return calibration.row_moments(calibration.einsum_rows(x, einsum_str, view))


KIND = register(EinsumKind())

__all__ = ["call_einsum_str", "EinsumKind", "KIND"]
