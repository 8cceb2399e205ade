"""``nnx.Einsum`` with a fixed ``einsum_str`` whose kernel is a (stack of) matrix → ``view_layers.EinsumSVD``:
kernel letters in both the input and the output are stack axes, those only in the output the rows (U), those only
in the input the columns (V) (``matrix_view.einsum_view``); statistics: the contracted input letters per stack
index (``calibration.einsum_rows``)."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import einsum_view
from jaxsvd.nnx import view_layers
from jaxsvd.nnx.kinds.base import Kind, register


def _specs(module) -> tuple[str, str]:
  """(input letters, kernel letters) of its einsum string."""
  lhs, rest = module.einsum_str.replace(" ", "").split(",")
  return lhs, rest.split("->")[0]


class EinsumKind(Kind):
  """``nnx.Einsum``: a custom ``einsum_op`` or a kernel that is not a matrix after grouping stays dense."""

  layer, svd_layer = nnx.Einsum, view_layers.EinsumSVD

  def reasons(self, module) -> list[str]:
    """A custom ``einsum_op``."""
    return [] if module.einsum_op is jax.numpy.einsum else ["a custom einsum_op"]

  def view(self, module, decomposition: str):
    """``einsum_view`` of its kernel, or why it has none (also: ``einsum_str`` given only at call time)."""
    if module.einsum_str is None:
      return "einsum_str is given at call time (the matrix view must be fixed at conversion)"
    return einsum_view(tuple(module.kernel.shape), module.einsum_str)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """An ``EinsumSVD`` (``Kind.to_svd``)."""
    bias = module.bias
    return view_layers.EinsumSVD(module.einsum_str, self.view(module, decomposition), kernel=module.kernel[...],
                                 rank=rank, bias=None if bias is None else bias[...], mode=mode, dtype=module.dtype,
                                 param_dtype=module.kernel.dtype, kernel_metadata=module.kernel.get_metadata(),
                                 bias_metadata=None if bias is None else bias.get_metadata(), sigma=sigma)

  def moments(self, module, x, view):
    """The moments of the contracted input letters, per stack index (``calibration.einsum_rows``)."""
    return calibration.row_moments(calibration.einsum_rows(x, module.einsum_str, view))

  def probe(self, module) -> jax.ShapeDtypeStruct:
    """An input with the kernel's sizes for its letters, 2 for the others."""
    lhs, spec = _specs(module)
    sizes = dict(zip(spec, tuple(module.kernel.shape)))
    return jax.ShapeDtypeStruct(tuple(sizes.get(c, 2) for c in lhs.replace(".", "")), np.float32)


KIND = register(EinsumKind())

__all__ = ["EinsumKind", "KIND"]
