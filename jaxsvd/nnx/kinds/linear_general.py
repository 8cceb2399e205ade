"""``nnx.LinearGeneral`` (no ``batch_axis``) → ``LinearGeneralSVD``: kernel (*in, *out) viewed as ∏out × ∏in, the
contracted input axes flattened in ``axis`` order; statistics: those axes of the input, flattened."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.nnx import layers
from jaxsvd.nnx.kinds.base import Kind, layer_args, register


class LinearGeneralKind(Kind):
  """``nnx.LinearGeneral``: one matrix ∏out × ∏in; per-batch kernels (``batch_axis``) and custom dot functions stay
  dense."""

  layer, svd_layer = nnx.LinearGeneral, layers.LinearGeneralSVD

  def kernel_shape(self, module) -> tuple[int, ...]:
    """(*batch sizes, *in_features, *out_features)."""
    return (*module.batch_axis.values(), *module.in_features, *module.out_features)

  def reasons(self, module) -> list[str]:
    """``batch_axis`` (one kernel per batch index) or a custom ``dot_general``."""
    return [why for bad, why in ((module.batch_axis, f"batch_axis={dict(module.batch_axis)} (one kernel per batch "
                                  "index)"), (module.dot_general or module.dot_general_cls, "a custom dot_general"))
            if bad]

  def view(self, module, decomposition: str):
    """``simple_view(kernel shape, 0, len(in_features))``."""
    return simple_view(tuple(module.kernel.shape), 0, len(module.in_features))

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """A ``LinearGeneralSVD`` (``Kind.to_svd``)."""
    return layers.LinearGeneralSVD(module.in_features, module.out_features, axis=module.axis,
                                   **layer_args(module, rank, mode, sigma))

  def probe(self, module):
    """(1, *in_features)."""
    return jax.ShapeDtypeStruct((1, *module.in_features), jnp.float32)

  def moments(self, module, x, view):
    """The moments of the contracted axes, flattened (``calibration.dense_general_rows``)."""
    return calibration.row_moments(calibration.dense_general_rows(x, view, module.axis))


KIND = register(LinearGeneralKind())

__all__ = ["LinearGeneralKind", "KIND"]
