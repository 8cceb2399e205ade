"""``nn.DenseGeneral``: kernel (*batch, *in, *out) as ∏out × ∏in per batch index (``batch_dims`` are stack axes);
runs the kernel way; statistics: the contracted axes, flattened in the kernel's order."""

from __future__ import annotations

import flax.linen as nn
import numpy as np

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.linen.kinds.base import Kind, register


class DenseGeneralKind(Kind):
  """``nn.DenseGeneral`` (every attention q/k/v/out projection)."""

  layer = nn.DenseGeneral

  def view(self, module, kernel_shape, decomposition, call=None):
    """``simple_view(kernel shape, len(batch_dims), len(axis))``."""
    n_batch = len(np.ravel(module.batch_dims)) if module.batch_dims else 0
    return simple_view(tuple(int(d) for d in kernel_shape), n_batch, len(np.ravel(module.axis)))

  def moments(self, module, x, view):
    """The moments of ``calibration.dense_general_rows``."""
    return calibration.row_moments(calibration.dense_general_rows(x, view, module.axis, module.batch_dims))


KIND = register(DenseGeneralKind())

__all__ = ["DenseGeneralKind", "KIND"]
