"""MACs and parameter counts of a model at its current ranks, for one input example.

Counted analytically per layer while the model is traced abstractly (``jax.eval_shape``), by intercepting every
call of a layer with a kind (``jaxsvd.linen.kinds``: Dense, DenseGeneral, Embed and its ``attend``, Einsum, convs,
ConvSVD, DenseSVD); each count is the kind's rule (``native_cost``, ``macs``). For an SVD layer the count is its
cheaper execution at inference, min(factored, dense) — what ``mode='auto'`` achieves once the kernel rebuild is
amortized (or merged away by export) — and its deployable parameter count min(r·(m + k), m·k) per matrix. Other
layers than plain Dense / 2-D Conv are counted from their output y and matrix view (m × k per stack slice): dense
y.size·k MACs (``attend``: y.size·m; an Embed lookup: 0; ConvTranspose: y.size·k / ∏strides), factored
y.size·r·(m + k)/m. A layer under ``nn.scan``/``nn.vmap`` counts once per slice. Elementwise ops (BN, ReLU,
pooling, adds, attention's softmax and its two activation products) are not counted.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.tree import get_node
from jaxsvd.linen import conversion, kinds
from jaxsvd.linen.svdifylib import SVDModel, abstract_init


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


def _native_cost(module, x) -> LayerCost:
  """A native layer's (or a zoo SVD layer's) cost: its kind's ``native_cost``."""
  macs, params = kinds.resolve(module).native_cost(module, x)
  return LayerCost(type(module).__name__, macs, params)


def _generic_cost(module, method: str, y_shape, node: dict, view) -> LayerCost:
  """Cost of a layer from its output shape and its params' shapes ``node`` (one slice), see the module doc."""
  bias = math.prod(node["bias"]) if "bias" in node else 0
  m, k = view.matrix_shape
  stack = math.prod(view.stack_shape)
  dense, applications = kinds.resolve(module).macs(module, method, y_shape, view)
  if "U" not in node:
    return LayerCost(type(module).__name__, dense, stack * m * k + bias)
  r = node["s"][-1]
  factored = applications * r * (m + k) if dense else 0
  return LayerCost(type(module).__name__ + "SVD", min(dense, factored), stack * min(r * (m + k), m * k) + bias)


def _shapes(module) -> dict[str, tuple]:
  params = module.variables.get("params", {})
  return {k: tuple(np.shape(v)) for k, v in conversion.unbox_tree(dict(params)).items()}


def count(model: nn.Module, input_shape: tuple[int, ...], input_dtype: Any = jnp.float32,
          **apply_kwargs: Any) -> CostReport:
  """Per-layer MACs/params of ``model`` for one example of shape ``input_shape`` (no batch dim).

  Ranks come from the model's config (the architecture is data); no params are needed.
  ``model`` may also be an ``jaxsvd.linen.SVDModel``: its converted layers count as the SVD layers they run as.

  Args:
    model: a linen module (or ``jaxsvd.linen.SVDModel``).
    input_shape: one example's shape without the batch dimension.
    input_dtype: the input's dtype (e.g. ``jnp.int32`` for token ids).
    **apply_kwargs: passed to the model's init (e.g. ``train=False``), not traced.

  Returns:
    A ``CostReport`` with one ``LayerCost`` per linear layer, keyed by the '/'-joined module path (a module called
    twice is counted once, at its last call; a layer under ``nn.scan``/``nn.vmap`` times its number of slices).
  """
  is_svd = isinstance(model, SVDModel)
  x = jax.ShapeDtypeStruct((1, *input_shape), input_dtype)
  views = model.report(x, **apply_kwargs).views if is_svd else {}
  calls: dict[str, tuple] = {}

  def interceptor(next_fun, args, kwargs, context):
    module, method = context.module, context.method_name
    y = next_fun(*args, **kwargs)
    if method not in ("__call__", "attend") or not args:
      return y
    path, kind = "/".join(module.path), kinds.resolve(module)
    if kind is None:
      return y
    if not isinstance(module, kind.layer) or kind.native(module, args[0]):  # a zoo SVD layer, or a native one
      calls[path] = (_native_cost(model.svd_layer(module) if is_svd else module, args[0]), _shapes(module))
    elif "params" in module.variables:
      node = _shapes(module)
      kernel = node.get(kind.kernel_name)
      view = views.get(path) or (kind.view(module, kernel, "channel") if kernel else None)
      if view is not None and not isinstance(view, str):
        calls[path] = ((module, method, tuple(y.shape), node, view), node)
    return y

  with nn.intercept_methods(interceptor):
    params = conversion.unbox_tree(abstract_init(model, x, **apply_kwargs)["params"])
  layers = {}
  for path, (call, slice_node) in calls.items():
    cost = call if isinstance(call, LayerCost) else _generic_cost(*call)
    full = get_node(params, path)
    name = next((k for k in ("U", *(kind.kernel_name for kind in kinds.registered())) if k in slice_node), None)
    if name is None:  # a zoo SVD layer's params live in its own scope, never under a scan
      layers[path] = cost
      continue
    slices = math.prod(np.shape(full[name])) // math.prod(slice_node[name])
    layers[path] = LayerCost(cost.kind, cost.macs * slices, cost.params * slices)
  return CostReport(layers)


__all__ = ["LayerCost", "CostReport", "count"]
