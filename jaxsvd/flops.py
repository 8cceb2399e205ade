"""MACs and parameter counts of a model at its current ranks, for one input example.

Counted analytically per layer while the model is traced abstractly (``jax.eval_shape``), by
intercepting every nn.Conv / nn.Dense / ConvSVD / DenseSVD call. For an SVD layer the count is
its cheaper execution at inference, min(factored, dense) — what ``mode='auto'`` achieves once the
kernel rebuild is amortized (or merged away by export) — and its deployable parameter count
min(r·(m + k), m·k). Elementwise ops (BN, ReLU, pooling, adds) are not counted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsvd.factors import conv_macs, conv_pads, dense_macs, matrix_shape
from jaxsvd.layers import ConvSVD, DenseSVD
from jaxsvd.svdify import SVDModel


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One layer's cost for one example: ``kind`` (the module's class name: 'Dense', 'Conv', 'DenseSVD',
  'ConvSVD'), ``macs`` and ``params`` (bias included; for an SVD layer min(r·(m + k), m·k) + bias)."""
  kind: str
  macs: int
  params: int


@dataclasses.dataclass(frozen=True)
class CostReport:
  """Costs of a model for one example: ``layers`` {module path: LayerCost}, with totals."""
  layers: dict[str, LayerCost]

  @property
  def macs(self) -> int:
    """Σ MACs over all counted layers."""
    return sum(c.macs for c in self.layers.values())

  @property
  def params(self) -> int:
    """Σ params over all counted layers."""
    return sum(c.params for c in self.layers.values())

  def svd_params(self) -> int:
    """Σ params over the SVD layers only (kinds ending in 'SVD')."""
    return sum(c.params for c in self.layers.values() if c.kind.endswith("SVD"))


def _strides(module) -> tuple[int, int]:
  s = module.strides if module.strides is not None else 1
  return (s, s) if isinstance(s, int) else tuple(s)


def _layer_cost(module, x) -> LayerCost | None:
  if not isinstance(module, (nn.Dense, DenseSVD, nn.Conv, ConvSVD)):
    return None
  kind = type(module).__name__
  bias = module.features if module.use_bias else 0
  if isinstance(module, (nn.Dense, DenseSVD)):
    k, n = x.shape[-1], module.features
    if isinstance(module, nn.Dense):
      return LayerCost(kind, k * n, k * n + bias)
    r = module.rank or min(k, n)
    macs = dense_macs(1, k, n, r)
    return LayerCost(kind, min(macs["factored"], macs["dense"]), min(r * (k + n), k * n) + bias)
  kh, kw = module.kernel_size
  strides = _strides(module)
  kernel_shape = (kh, kw, x.shape[-1], module.features)
  pads = conv_pads(x.shape[1:3], (kh, kw), strides, module.padding)
  dense_params = math.prod(kernel_shape)
  if isinstance(module, nn.Conv):
    return LayerCost(kind, conv_macs(1, x.shape[1:3], kernel_shape, strides, pads, 1, "channel")["dense"],
                     dense_params + bias)
  rows, cols = matrix_shape(kernel_shape, module.decomposition)
  r = module.rank or min(rows, cols)
  macs = conv_macs(1, x.shape[1:3], kernel_shape, strides, pads, r, module.decomposition)
  return LayerCost(kind, min(macs["factored"], macs["dense"]), min(r * (rows + cols), dense_params) + bias)


def count(model: nn.Module, input_shape: tuple[int, ...], **apply_kwargs: Any) -> CostReport:
  """Per-layer MACs/params of ``model`` for one example of shape ``input_shape`` (no batch dim).

  Ranks come from the model's config (the architecture is data); no params are needed.
  ``model`` may also be an ``svdify.SVDModel``: its converted layers count as the SVD layers they run as.

  Args:
    model: a linen module (or ``svdify.SVDModel``).
    input_shape: one example's shape without the batch dimension.
    **apply_kwargs: passed to the model's init (e.g. ``train=False``).

  Returns:
    A ``CostReport`` with one ``LayerCost`` per nn.Dense / nn.Conv / DenseSVD / ConvSVD call, keyed by the
    '/'-joined module path (a module called twice is counted once, at its last call).
  """
  layers: dict[str, LayerCost] = {}
  as_run = model.svd_layer if isinstance(model, SVDModel) else (lambda module: module)
  init = model.init if isinstance(model, SVDModel) else model.init_with_output

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and args:
      cost = _layer_cost(as_run(context.module), args[0])
      if cost is not None:
        layers["/".join(context.module.path)] = cost
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)

  def run(x):
    with nn.intercept_methods(interceptor):
      return init(jax.random.key(0), x, **apply_kwargs)

  jax.eval_shape(run, x)
  return CostReport(layers)
