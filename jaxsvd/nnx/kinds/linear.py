"""``nnx.Linear`` → ``LinearSVD``: kernel (c, n) viewed as M = Kᵀ (n × c); statistics: the input features."""

from __future__ import annotations

import jax
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.nnx import layers
from jaxsvd.nnx.kinds.base import Kind, layer_args, register


class LinearKind(Kind):
  """``nnx.Linear``: one matrix n × c; a custom ``dot_general`` stays dense."""

  layer, svd_layer = nnx.Linear, layers.LinearSVD

  def kernel_shape(self, module) -> tuple[int, ...]:
    """(in_features, out_features)."""
    return (module.in_features, module.out_features)

  def reasons(self, module) -> list[str]:
    """A custom ``dot_general`` (the SVD layer applies plain matmuls)."""
    return [] if module.dot_general is jax.lax.dot_general else ["a custom dot_general"]

  def view(self, module, decomposition: str):
    """``simple_view((c, n), 0, 1)``."""
    return simple_view(tuple(module.kernel.shape), 0, 1)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """A ``LinearSVD`` (``Kind.to_svd``)."""
    return layers.LinearSVD(module.in_features, module.out_features, **layer_args(module, rank, mode, sigma))

  def moments(self, module, x, view):
    """The moments of x's feature vectors (``Kind.moments``)."""
    return calibration.row_moments(x.reshape(-1, x.shape[-1]))


KIND = register(LinearKind())

__all__ = ["LinearKind", "KIND"]
