"""Data-aware compression to a budget, the framework-neutral half: error spectra, the params counter, the ranks.

A framework's ``compress`` (linen: ``jaxsvd.linen.compress.compress``; NNX: ``jaxsvd.nnx.calibration.compress``)
collects each converted layer's input statistics (C = E[x xᵀ]) and views, then calls:

1. ``spectra``: per layer the spectrum σ(W·S) of ``method``'s objective (``core.calibration.spectrum``: S = I, D or
   C^½); its tail Σ_{i>r} σ_i² is the layer's error at rank r (for 'whitened': exactly its output error
   E‖(W − W_r)x‖²; with norm-aware statistics, measured after the BatchNorm that directly follows the layer).
2. ``allocate``: ``budget.keep_counts`` on those spectra: one relative error level e shared by all layers (each keeps
   the smallest r with Σ_{i>r} σ_i² ≤ e·Σ σ_i²), bisected to the largest set of ranks within the budget, the rest of
   the budget filled one direction at a time by the largest relative error reduction σ_{r+1}² / Σ σ².
3. ``core.calibration.decompose_params``: each layer's rank-r factors by ``method``.
The budget is MACs (a ``budget.MacsCounter`` the framework counts: ``jaxsvd.linen.budget``) or the converted
layers' params (``params_counter``: Σ min(r(m + k), mk) ≤ Σ mk / X). Nothing here imports a framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.tree import get_node
from jaxsvd.pruning import budget
from jaxsvd.pruning.rank import Floors


def params_counter(views: Mapping[str, MatrixView]) -> budget.MacsCounter:
  """Params of the converted layers at given ranks: Σ_l ∏L·min(r(m + k), m·k), and dense: Σ_l ∏L·m·k.

  Args:
    views: {layer path: ``MatrixView``}.

  Returns:
    A ``budget.MacsCounter`` counting params instead of MACs (``keep_counts`` only compares numbers).
  """
  sizes = {p: (math.prod(v.stack_shape), *v.matrix_shape) for p, v in views.items()}
  return budget.MacsCounter.from_layers({p: (L * m * k, L * (m + k)) for p, (L, m, k) in sizes.items()})


def spectra(params, views: Mapping[str, MatrixView], method: str, stats: Mapping[str, calibration.LayerStats],
            alpha: float = 0.5) -> dict[str, np.ndarray]:
  """{layer path: σ(W·S) descending ((*L, n) for a stacked layer)} of each converted layer
  (``core.calibration.spectrum``).

  Args:
    params: the dense params (unboxed).
    views: {layer path: ``MatrixView``}.
    method: one of ``calibration.METHODS`` (S of its objective; 'plain' or no stats: S = I).
    stats: {layer path: ``LayerStats``}.
    alpha: the activation method's α.

  Returns:
    {path: float64 σ}.
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


def shared_rank_spectrum(sigma: np.ndarray) -> np.ndarray:
  """The 1-D spectrum of a stack of matrices truncated at one shared rank: σ̄_i = √(Σ_L σ_{L,i}²).

  A stacked layer (scan/vmap slices, Einsum stack letters, groups) holds one rank r for all its matrices, so its
  error at rank r is Σ_L Σ_{i>r} σ_{L,i}² = Σ_{i>r} σ̄_i²: the allocation treats σ̄ as one layer's spectrum
  (descending, as a sum of descending sequences).

  Args:
    sigma: (*L, n) per-matrix spectra, each descending (a 1-D σ is returned as it is).

  Returns:
    (n,) float64.
  """
  sigma = np.asarray(sigma, np.float64)
  return sigma if sigma.ndim == 1 else np.sqrt(np.sum(sigma.reshape(-1, sigma.shape[-1]) ** 2, axis=0))


def allocate(sigma: Mapping[str, np.ndarray], counter: budget.MacsCounter, reduction: float,
             floors: Floors = Floors()) -> dict[str, int]:
  """Ranks meeting ``counter`` ≤ dense / ``reduction`` by one shared relative error level (module doc, step 3).

  Args:
    sigma: {layer path: σ descending; (*L, n) for a stacked layer, whose rank is shared (``shared_rank_spectrum``)}.
    counter: the budget's counter (a stacked layer's counts cover its L matrices).
    reduction: X ≥ 1.
    floors: lower bounds on each rank (the original rank is the full rank).

  Returns:
    {path: rank}.

  Raises:
    ValueError: if the floors cannot meet the budget.
  """
  sigma = {p: shared_rank_spectrum(s) for p, s in sigma.items()}
  floor = lambda p, k: floors.apply(k, len(sigma[p]), len(sigma[p]))  # noqa: E731
  return budget.keep_counts(sigma, floor, counter, reduction)[0]


__all__ = ["params_counter", "spectra", "shared_rank_spectrum", "allocate"]
