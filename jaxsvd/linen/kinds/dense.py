"""``nn.Dense`` (and the zoo's ``DenseSVD``): kernel (c, n) as M = Kᵀ (n × c); a plain ``nn.Dense`` runs natively as
``DenseSVD`` computes it; statistics: the input features."""

from __future__ import annotations

import math

import flax.linen as nn

from jaxsvd.core import calibration, svd
from jaxsvd.core.factors import dense_macs
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.linen import conversion, layers
from jaxsvd.linen.kinds.base import Kind, register


def native_dense(module: nn.Dense, view, x, rank, settings):
  """``nn.Dense`` as ``jaxsvd.linen.DenseSVD`` computes it, with the module's own bias/dtype settings.

  Creates (or reads) U, s, V and, with ``use_bias``, the bias in ``module``'s scope.

  Args:
    module: the ``nn.Dense`` being called.
    view: its ``MatrixView`` (``simple_view((c, features), 0, 1)``).
    x: its input (..., c).
    rank: r, or None for full rank.
    settings: the ``SVDModel`` (its ``mode``, ``sigma`` and ``init_scheme`` are read).

  Returns:
    The (..., features) output, bias included, in ``module.dtype`` (None: the promoted dtype).
  """
  U, s, V = conversion.native_factors(module, view, rank, settings)
  return conversion.native_output(module, svd.dense_svd_apply(x, U, s, V, module.features, settings.mode,
                                                              module.dtype))


class DenseKind(Kind):
  """``nn.Dense``: one matrix n × c, native (all execution modes) when exactly ``nn.Dense``."""

  layer, svd_layer = nn.Dense, layers.DenseSVD

  def view(self, module, kernel_shape, decomposition, call=None):
    """``simple_view((c, n), 0, 1)``."""
    return simple_view(tuple(int(d) for d in kernel_shape), 0, 1)

  def native(self, module, x) -> bool:
    """Exactly ``nn.Dense``."""
    return type(module) is nn.Dense

  def native_call(self, module, x, rank, settings):
    """``native_dense``."""
    view = simple_view((x.shape[-1], module.features), 0, 1)
    return view, native_dense(module, view, x, rank, settings)

  def native_layer(self, module, rank, settings):
    """A ``DenseSVD`` with the layer's settings, for exactly ``nn.Dense``."""
    if type(module) is not nn.Dense:
      return None
    return layers.DenseSVD(module.features, rank=rank, use_bias=module.use_bias, mode=settings.mode,
                           sigma=settings.sigma, init_scheme=settings.init_scheme, dtype=module.dtype, parent=None)

  def native_cost(self, module, x):
    """x's vectors times c·n (dense), or min(factored, dense) MACs and min(r(c + n), cn) params (``DenseSVD``)."""
    k, n = x.shape[-1], module.features
    vectors, bias = math.prod(x.shape[:-1]), (n if module.use_bias else 0)
    if not isinstance(module, layers.DenseSVD):
      return vectors * k * n, k * n + bias
    r = module.rank or min(k, n)
    macs = dense_macs(vectors, k, n, r)
    return min(macs["factored"], macs["dense"]), min(r * (k + n), k * n) + bias

  def moments(self, module, x, view):
    """The moments of x's feature vectors."""
    return calibration.row_moments(x.reshape(-1, x.shape[-1]))

  def deploy_geometry(self, module, x):
    """((c, n), None, None)."""
    return (x.shape[-1], module.features), None, None


KIND = register(DenseKind())

__all__ = ["native_dense", "DenseKind", "KIND"]
