"""Compress a trained dense linen model to a MACs or params budget with data-aware SVD (one call).

  result = compress(model, variables, batches, method="whitened", macs_reduction=2.0, train=False)
  result.model.apply(result.variables, x, train=False)       # the SVD model (``svdify``) at the chosen ranks

1. ``linen.calibration.collect``: each converted layer's input statistics over ``batches`` (C = E[x xᵀ]).
2. Per layer the spectrum σ(W·S) of ``method``'s objective (``core.calibration.spectrum``: S = I, D or C^½); its
   tail Σ_{i>r} σ_i² is the layer's error at rank r (for 'whitened': exactly its output error E‖(W − W_r)x‖²;
   with ``norm_aware``, measured after the BatchNorm that directly follows the layer: A = diag(γ/√(var + ε))).
3. Ranks: ``budget.keep_counts`` on those spectra: one relative error level e shared by all layers (each keeps the
   smallest r with Σ_{i>r} σ_i² ≤ e·Σ σ_i²), bisected to the largest set of ranks within the budget, the rest of
   the budget filled one direction at a time by the largest relative error reduction σ_{r+1}² / Σ σ².
4. ``core.calibration.decompose_params``: each layer's rank-r factors by ``method``.
The budget is MACs (``macs_reduction``: dense MACs / X, ``linen.flops``) or the converted layers' params
(``params_reduction``: Σ min(r(m + k), mk) ≤ Σ mk / X).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.tree import get_node
from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.linen import conversion, flops
from jaxsvd.linen.svdifylib import SVDModel, svdify
from jaxsvd.pruning import budget
from jaxsvd.pruning.rank import Floors


@dataclasses.dataclass(frozen=True)
class Compressed:
  """What ``compress`` returns: the SVD ``model`` (an ``SVDModel``), its ``variables``, the chosen ``ranks``, the
  calibration ``stats`` {path: ``LayerStats``}, the budget's ``cost`` (MACs or params) and its ``target``."""
  model: Any
  variables: dict
  ranks: dict[str, int]
  stats: dict[str, calibration.LayerStats]
  cost: int
  target: float


def params_counter(views: Mapping[str, MatrixView]) -> budget.MacsCounter:
  """Params of the converted layers at given ranks: Σ_l ∏L·min(r(m + k), m·k), and dense: Σ_l ∏L·m·k.

  Args:
    views: {layer path: ``MatrixView``}.

  Returns:
    A ``budget.MacsCounter`` counting params instead of MACs (``keep_counts`` only compares numbers).
  """
  sizes = {p: (math.prod(v.stack_shape), *v.matrix_shape) for p, v in views.items()}
  return budget.MacsCounter(
      lambda ranks: sum(L * min(ranks[p] * (m + k), m * k) for p, (L, m, k) in sizes.items()),
      sum(L * m * k for L, m, k in sizes.values()))


def macs_counter(model: nn.Module, svd_model: SVDModel, x, paths, **call_kwargs) -> budget.MacsCounter:
  """MACs per example of ``svd_model`` at given ranks (``flops.count``, linear in each rank) and of ``model``.

  Args:
    model: the dense model.
    svd_model: its ``svdify`` form.
    x: one batch of the model's input (its shape without the batch axis and its dtype are used).
    paths: the converted layers' paths.
    **call_kwargs: static call arguments.

  Returns:
    The ``budget.MacsCounter``: other layers + Σ min(dense_l, r_l·MACs_l(r = 1)).
  """
  shape, dtype = tuple(np.shape(x)[1:]), x.dtype
  dense = flops.count(model, shape, dtype, **call_kwargs).layers
  ones = flops.count(svd_model.with_ranks({p: 1 for p in paths}), shape, dtype, **call_kwargs).layers
  fixed = sum(c.macs for p, c in ones.items() if p not in paths)
  per_layer = {p: (dense[p].macs, ones[p].macs) for p in paths}
  return budget.MacsCounter(lambda ranks: fixed + sum(min(d, ranks[p] * one) for p, (d, one) in per_layer.items()),
                            sum(c.macs for c in dense.values()))


def spectra(params, views: Mapping[str, MatrixView], method: str, stats: Mapping[str, calibration.LayerStats],
            alpha: float = 0.5) -> dict[str, np.ndarray]:
  """{layer path: σ(W·S) descending} of each unstacked converted layer (``core.calibration.spectrum``).

  Args:
    params: the dense params (unboxed).
    views: {layer path: ``MatrixView``}.
    method: one of ``calibration.METHODS`` (S of its objective; 'plain' or no stats: S = I).
    stats: {layer path: ``LayerStats``}.
    alpha: the activation method's α.

  Returns:
    {path: 1-D float64 σ}.
  """
  out = {}
  for path, view in views.items():
    node = get_node(params, path)
    kernel = node["kernel"] if "kernel" in node else node["embedding"]
    w = np.asarray(view.to_matrix(jnp.asarray(kernel)), np.float64)
    layer = stats.get(path)
    out[path] = calibration.spectrum(w, calibration.input_scaling(layer, method, alpha),
                                     calibration.output_weights(layer, method, w.shape[-2]))
  return out


def allocate(sigma: Mapping[str, np.ndarray], counter: budget.MacsCounter, reduction: float,
             floors: Floors = Floors()) -> dict[str, int]:
  """Ranks meeting ``counter`` ≤ dense / ``reduction`` by one shared relative error level (module doc, step 3).

  Args:
    sigma: {layer path: σ descending}.
    counter: the budget's counter.
    reduction: X ≥ 1.
    floors: lower bounds on each rank (the original rank is the full rank).

  Returns:
    {path: rank}.

  Raises:
    ValueError: if the floors cannot meet the budget, or a layer is stacked (groups, batch_dims).
  """
  if stacked := sorted(p for p, s in sigma.items() if np.ndim(s) > 1):
    raise ValueError(f"compress: the budget allocation does not support stacked layers yet: {stacked}")
  floor = lambda p, k: floors.apply(k, len(sigma[p]), len(sigma[p]))  # noqa: E731
  return budget.keep_counts(dict(sigma), floor, counter, reduction)[0]


def compress(model: nn.Module, variables, batches: Iterable, method: str = "whitened",
             macs_reduction: float | None = None, params_reduction: float | None = None, alpha: float = 0.5,
             floors: Floors = Floors(), svdify_options: Mapping[str, Any] | None = None, norm_aware: bool = False,
             **call_kwargs) -> Compressed:
  """A trained dense linen ``model`` in SVD form at a budget, decomposed by ``method`` (module doc).

  Args:
    model: the dense linen model.
    variables: its trained variables.
    batches: calibration batches (a list or any re-iterable: the first is also the sample input): arrays, or tuples
      of positional inputs.
    method: 'plain', 'activation' or 'whitened'.
    macs_reduction: X: the compressed model has ≤ dense MACs / X.
    params_reduction: X: the converted layers hold ≤ their dense params / X (exactly one of the two is given).
    alpha: the activation method's α.
    floors: lower bounds on every rank.
    svdify_options: keyword arguments of ``svdify`` (e.g. skip, decomposition).
    norm_aware: weight each layer's output error by the BatchNorm that directly follows it, if any
      (``linen.calibration.norm_scales``; the data-aware methods only).
    **call_kwargs: static call arguments (e.g. ``train=False``).

  Returns:
    The ``Compressed`` result.

  Raises:
    ValueError: naming the argument if ``method`` is unknown, not exactly one reduction is given, it is < 1, or the
      floors cannot meet it.
  """
  calibration.input_scaling(None, method, alpha)  # validates method and alpha
  if (macs_reduction is None) == (params_reduction is None):
    raise ValueError("compress: give exactly one of macs_reduction and params_reduction")
  reduction = macs_reduction if macs_reduction is not None else params_reduction
  if not isinstance(reduction, (int, float)) or not reduction >= 1.0:
    raise ValueError(f"compress: {'macs' if macs_reduction else 'params'}_reduction must be a number >= 1, "
                     f"got {reduction!r}")
  batches = list(batches)
  first = batches[0] if isinstance(batches[0], tuple) else (batches[0],)
  svd_model = svdify(model, **dict(svdify_options or {}))
  views = svd_model.report(*first, **call_kwargs).views
  stats = linen_calibration.collect(model, variables, batches, views, **call_kwargs)
  if norm_aware:
    scales = linen_calibration.norm_scales(model, variables, first, views, **call_kwargs)
    stats = {p: s.with_output_scale(scales.get(p)) for p, s in stats.items()}
  params = conversion.unbox_tree(variables["params"])
  counter = (macs_counter(model, svd_model, first[0], list(views), **call_kwargs) if macs_reduction is not None
             else params_counter(views))
  ranks = allocate(spectra(params, views, method, stats, alpha), counter, reduction, floors)
  new_params = calibration.decompose_params(params, views, ranks, method, stats, alpha)
  return Compressed(svd_model.with_ranks(ranks), {**conversion.unbox_tree(dict(variables)), "params": new_params},
                    ranks, stats, counter.at_ranks(ranks), counter.dense / reduction)


__all__ = ["Compressed", "params_counter", "macs_counter", "spectra", "allocate", "compress"]
