"""``nnx.Conv`` (1-D/2-D, one feature group, no dilation or mask) → ``ConvSVD``: kernel (*k, c, n) viewed as
n × ∏k·c ('channel') or, for 2-D, kw·n × kh·c ('spatial'); statistics: the im2col (or column) patches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import conv_view
from jaxsvd.nnx import layers
from jaxsvd.nnx.kinds.base import Kind, layer_args, register


def _ones(v) -> bool:
  return v is None or all(d == 1 for d in ((v,) if isinstance(v, int) else v))


class ConvKind(Kind):
  """``nnx.Conv``: its reasons are >2-D kernels, input or kernel dilation, feature groups, a mask and a custom
  ``conv_general_dilated``."""

  layer, svd_layer = nnx.Conv, layers.ConvSVD

  def reasons(self, module) -> list[str]:
    """The conv options ``ConvSVD`` does not compute."""
    checks = {f"{len(module.kernel_size)}-D kernel (1-D and 2-D convs convert)": len(module.kernel_size) > 2,
              f"input_dilation={module.input_dilation}": not _ones(module.input_dilation),
              f"kernel_dilation={module.kernel_dilation}": not _ones(module.kernel_dilation),
              f"feature_group_count={module.feature_group_count}": module.feature_group_count != 1,
              "a mask": module.mask is not None,
              "a custom conv_general_dilated": module.conv_general_dilated is not jax.lax.conv_general_dilated}
    return [why for why, bad in checks.items() if bad]

  def view(self, module, decomposition: str):
    """``conv_view(kernel shape, 1, decomposition)`` (a 1-D kernel: the channel view)."""
    return conv_view(tuple(module.kernel.shape), 1, decomposition)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """A ``ConvSVD`` (``Kind.to_svd``)."""
    return layers.ConvSVD(module.in_features, module.out_features, module.kernel_size, module.strides,
                          padding=module.padding, decomposition=decomposition,
                          **layer_args(module, rank, mode, sigma))

  def moments(self, module, x, view):
    """The moments of its patches (``calibration.conv_rows``); None for 'CIRCULAR'/'REFLECT'/'CAUSAL' padding."""
    rows = calibration.conv_rows(module, x, view)
    return None if rows is None else calibration.row_moments(rows)

  def probe(self, module) -> jax.ShapeDtypeStruct:
    """(1, *kernel_size, in_features): one window."""
    return jax.ShapeDtypeStruct((1, *tuple(module.kernel.shape)[:-2], module.in_features), jnp.float32)

  def decomposition(self, layer) -> str | None:
    """The layer's ``decomposition``."""
    return layer.decomposition


KIND = register(ConvKind())

__all__ = ["ConvKind", "KIND"]
