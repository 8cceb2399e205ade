"""Compress a trained dense linen model to a MACs or params budget with data-aware SVD (one call).

The linen half of data-aware compression (the NNX twin: ``jaxsvd.nnx.calibration.compress``); spectra, the params
counter and the rank allocation are framework-neutral (``jaxsvd.pruning.compress``).

  result = compress(model, variables, batches, method="whitened", macs_reduction=2.0, train=False)
  result.model.apply(result.variables, x, train=False)       # the SVD model (``svdify``) at the chosen ranks

1. ``linen.calibration.collect``: each converted layer's input statistics over ``batches`` (C = E[x xᵀ]).
2. Per layer the spectrum σ(W·S) of ``method``'s objective (``core.calibration.spectrum``: S = I, D or C^½); its
   tail Σ_{i>r} σ_i² is the layer's error at rank r (for 'whitened': exactly its output error E‖(W − W_r)x‖²;
   with ``norm_aware``, measured after the BatchNorm that directly follows the layer: A = diag(γ/√(var + ε))).
3. Ranks: ``pruning.compress.allocate`` (``budget.keep_counts``) on those spectra: one relative error level e shared
   by all layers (each keeps the smallest r with Σ_{i>r} σ_i² ≤ e·Σ σ_i²), bisected to the largest set of ranks
   within the budget, the rest of the budget filled one direction at a time by the largest relative error reduction
   σ_{r+1}² / Σ σ².
4. ``core.calibration.decompose_params``: each layer's rank-r factors by ``method``.
A layer under ``nn.scan``/``nn.vmap`` (kernel (L, ...)) has each slice's statistics (``linen.lifted``): its spectra
σ(W_ℓ·S_ℓ) are summed into one shared-rank spectrum σ̄_i = √(Σ_ℓ σ_ℓ,i²) (``pruning.compress.shared_rank_spectrum``:
its factors U (L, m, r) hold one r), and slice ℓ is decomposed with its own S_ℓ.
The budget is MACs (``macs_reduction``: dense MACs / X, ``linen.budget.macs_counter`` from two ``linen.flops``
traces) or the converted layers' params (``params_reduction``: ``pruning.compress.params_counter``,
Σ min(r(m + k), mk) ≤ Σ mk / X).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import numpy as np

from jaxsvd.core import calibration
from jaxsvd.linen import budget as linen_budget
from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.linen import conversion
from jaxsvd.linen.svdifylib import svdify
from jaxsvd.pruning.compress import allocate, params_counter, spectra
from jaxsvd.pruning.rank import Floors

NO_STATISTICS = ("its kind has no statistics (ConvTranspose, ConvLocal, 'CIRCULAR'/'CAUSAL' padded convs), only a "
                 "method other than its call reaches it (Embed's attend), or the calibration batches never called it")


@dataclasses.dataclass(frozen=True)
class Compressed:
  """What ``compress`` returns: the SVD ``model`` (an ``SVDModel``), its ``variables``, the chosen ``ranks``, the
  calibration ``stats`` {path: ``LayerStats``}, the budget's ``cost`` (MACs or params) and its ``target``, and
  ``plain`` {path: why}: the converted layers that got no statistics, so their factors are the plain truncated SVD
  (also a warning; empty for ``method='plain'``)."""
  model: Any
  variables: dict
  ranks: dict[str, int]
  stats: dict[str, calibration.LayerStats]
  cost: int
  target: float
  plain: dict[str, str] = dataclasses.field(default_factory=dict)


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
  at_one = svd_model.with_ranks({p: 1 for p in views})
  counter = (linen_budget.macs_counter(model, at_one, list(views), tuple(np.shape(first[0])[1:]), first[0].dtype,
                                       **call_kwargs) if macs_reduction is not None else params_counter(views))
  ranks = allocate(spectra(params, views, method, stats, alpha), counter, reduction, floors)
  new_params = calibration.decompose_params(params, views, ranks, method, stats, alpha)
  plain = {} if method == "plain" else {p: NO_STATISTICS for p in ranks if p not in stats}
  if plain:
    warnings.warn(f"compress: {method} factors need statistics; plain factors for {sorted(plain)} ({NO_STATISTICS})",
                  stacklevel=2)
  return Compressed(svd_model.with_ranks(ranks), {**conversion.unbox_tree(dict(variables)), "params": new_params},
                    ranks, stats, counter.at_ranks(ranks), counter.dense / reduction, plain)


__all__ = ["NO_STATISTICS", "Compressed", "compress"]
