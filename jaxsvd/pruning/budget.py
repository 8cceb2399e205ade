"""Budget-targeted SVD rank pruning: one global energy, bisected so the model meets a MACs target.

The 'budget' strategy (``rank.Strategy('budget', macs_reduction=X)``) keeps, in every SVD layer, the smallest k with
Σ_{i≤k} s_i² ≥ (1 − e)·Σ_i s_i² (the 'energy' rule, then the floors) for *one* e shared by all layers, and picks
the smallest e at which the whole model's MACs (``MacsCounter``: each SVD layer at its cheaper execution) are at
most  target = dense MACs / X  (dense: the same model with every SVD layer dense). Per layer the kept rank is a
non-increasing step function of e and MACs are non-decreasing in every rank, so the model's MACs are a
non-increasing step function of e that changes only where some layer's k does:
at e_{l,k} = 1 − Σ_{i≤k} s_{l,i}² / Σ_i s_{l,i}². The search bisects over these sorted breakpoints. One step of e
moves one layer by one direction, which in an early full-resolution layer can be > 1 % of the model's MACs; so the
budget left under the target is then filled greedily with single directions (the most energetic next direction
of any layer first, a layer dropping out once its next one does not fit). Like AIMET's compression-ratio search,
with one global knob. MACs are counted per SVD layer as min(dense, r·(MACs at r = 1)) (``MacsCounter.from_layers``),
exact for the count of ``jaxsvd.linen.flops`` (the factored execution is linear in r), whose two traces the framework
runs: this module imports no framework.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np

from jaxsvd.core import registry
from jaxsvd.core.record import Architecture

_TOLERANCE = 1e-12  # as rank.keep_count_by_energy


@dataclasses.dataclass(frozen=True)
class MacsCounter:
  """MACs per example of a model at given SVD ranks (``at_ranks``) and of its dense model (``dense``).

  The search only compares numbers, so a counter may count anything monotone in each rank (e.g. params:
  ``pruning.compress.params_counter``). A framework builds it from per-layer counts (``from_layers``;
  ``jaxsvd.linen.budget`` from two ``flops.count`` traces); this module imports no framework.
  """
  at_ranks: Callable[[Mapping[str, int]], int]
  dense: int

  @classmethod
  def from_layers(cls, layers: Mapping[str, tuple[int, int]], fixed: int = 0,
                  dense: int | None = None) -> MacsCounter:
    """The counter of a model whose SVD layer l costs min(dense_l, r_l · at_one_l) (its cheaper execution).

    Args:
      layers: {SVD layer path: (dense_l, at_one_l)}: the layer's cost dense and at rank 1 (the factored execution
        is linear in r).
      fixed: the cost of everything else (layers that are not SVD layers).
      dense: the dense model's cost; None: ``fixed`` + Σ dense_l.

    Returns:
      The ``MacsCounter``: at ranks r, ``fixed`` + Σ_l min(dense_l, r_l · at_one_l).
    """
    layers = {p: (int(d), int(one)) for p, (d, one) in layers.items()}
    total = fixed + sum(d for d, _ in layers.values()) if dense is None else dense
    return cls(lambda ranks: fixed + sum(min(d, ranks[p] * one) for p, (d, one) in layers.items()), total)

  @classmethod
  def for_architecture(cls, architecture: Architecture, paths) -> MacsCounter:
    """The counter of a zoo record, built by the framework registered as 'macs/zoo' (``jaxsvd.core.registry``).

    Zoo models are linen models: ``jaxsvd.linen.budget.architecture_macs`` counts with ``flops.count`` on
    ``architecture.dense()`` and on the model with every SVD layer at rank 1 (imported on first use).

    Args:
      architecture: the record of an SVD model.
      paths: its SVD layers' paths (e.g. the keys of ``structure.ranks(params)``).

    Returns:
      The ``MacsCounter``: MACs = Σ_other layers + Σ_SVD min(dense_l, r_l · MACs_l(r = 1)).
    """
    return registry.lookup("macs/zoo")(architecture, paths)


def energy_keep(s_sorted: np.ndarray, energy: float) -> int:
  """The 'energy' rule at e = ``energy`` ∈ [0, 1]: smallest k with Σ_{i≤k} s_i² ≥ (1 − e)·Σ s_i² (0 if s = 0).

  Args:
    s_sorted: one layer's |s|, sorted descending (1-D).
    energy: e, the fraction of Σ s_i² the dropped directions may hold (compared with a relative tolerance of 1e-12).

  Returns:
    k, an int in [0, len(s_sorted)]: 0 if ``s_sorted`` is empty or all zero.
  """
  cumulative = np.cumsum(s_sorted**2)
  if len(cumulative) == 0 or cumulative[-1] <= 0:
    return 0
  return int(np.argmax(cumulative >= (1.0 - energy) * cumulative[-1] * (1 - _TOLERANCE))) + 1


def breakpoints(s_sorted: Mapping[str, np.ndarray]) -> np.ndarray:
  """Every e at which some layer's energy-rule k changes, plus 0, sorted ascending and unique.

  Args:
    s_sorted: {SVD layer path: |s| sorted descending}; layers whose s is empty or all zero add no breakpoint.

  Returns:
    A 1-D float array of the e_{l,k} = 1 − Σ_{i≤k} s_{l,i}² / Σ_i s_{l,i}² of every layer l and k (clipped to
    [0, 1]) and 0, sorted ascending without duplicates.
  """
  values = [np.zeros(1)]
  for s in s_sorted.values():
    cumulative = np.cumsum(s**2)
    if len(cumulative) and cumulative[-1] > 0:
      values.append(np.clip(1.0 - cumulative / cumulative[-1], 0.0, 1.0))
  return np.unique(np.concatenate(values))


def keep_counts(s_sorted: Mapping[str, np.ndarray], floor: Callable[[str, int], int], macs: MacsCounter,
                macs_reduction: float) -> tuple[dict[str, int], float, int, float]:
  """Per-layer kept ranks meeting MACs ≤ dense / ``macs_reduction`` with the least pruning.

  Args:
    s_sorted: {SVD layer path: |s| sorted descending (float64)}.
    floor: ``(path, k) -> k'``: the floors applied to a layer's k (``Floors.apply`` with its ranks).
    macs: counts the model's MACs at given ranks, and the dense model's.
    macs_reduction: X ≥ 1; the target is ``macs.dense / X``.

  Returns:
    ({path: k}, the global e used, the model's MACs at those ranks, the target).

  Raises:
    ValueError: if even the largest e (every layer at its floor) exceeds the target.
  """
  target = macs.dense / macs_reduction
  cache: dict[tuple, int] = {}

  def ranks_at(e: float) -> dict[str, int]:
    return {p: floor(p, energy_keep(s, e)) for p, s in s_sorted.items()}

  def cost(e: float) -> int:
    ranks = ranks_at(e)
    key = tuple(sorted(ranks.items()))
    if key not in cache:
      cache[key] = macs.at_ranks(ranks)
    return cache[key]

  current = {p: len(s) for p, s in s_sorted.items()}
  if macs.at_ranks(current) <= target:
    return current, 0.0, macs.at_ranks(current), target
  candidates = breakpoints(s_sorted)
  low, high = 0, len(candidates) - 1  # invariant: cost(candidates[low]) > target ≥ cost(candidates[high])
  if cost(candidates[0]) <= target:
    high = 0
  elif cost(candidates[high]) > target:
    raise ValueError(f"macs_reduction={macs_reduction} cannot be met: with every layer at its floor the model has "
                     f"{cost(candidates[high]):,} MACs > target {math.floor(target):,}")
  while high - low > 1:
    mid = (low + high) // 2
    low, high = (low, mid) if cost(candidates[mid]) <= target else (mid, high)
  e = float(candidates[high])
  ranks = _fill(ranks_at(e), s_sorted, floor, macs.at_ranks, target)
  return ranks, e, macs.at_ranks(ranks), target


def _fill(ranks: dict[str, int], s_sorted, floor, at_ranks, target: float) -> dict[str, int]:
  """Adds single directions, most energetic (s_k² / Σ s²) first, while the model stays within ``target``."""
  ranks = dict(ranks)

  def importance(path):
    s, k = s_sorted[path], ranks[path]
    return s[k] ** 2 / max(np.sum(s**2), 1e-300) if k < len(s) else -1.0

  open_layers = {p for p in ranks if ranks[p] < len(s_sorted[p])}
  while open_layers:
    path = max(sorted(open_layers), key=importance)
    grown = {**ranks, path: floor(path, ranks[path] + 1)}
    if grown[path] > ranks[path] and at_ranks(grown) <= target:
      ranks = grown
      if ranks[path] >= len(s_sorted[path]):
        open_layers.discard(path)
    else:
      open_layers.discard(path)
  return ranks


RAMPS = ("none", "linear", "cubic")


def ramped_reduction(final: float, event: int, events: int, ramp: str = "none") -> float:
  """The MACs reduction the ``event``-th of ``events`` budget prunes should meet, so that the last meets ``final``.

  With t = event / events and X = ``final``, the kept fraction of the dense MACs is

      f(t) = 1 − (1 − 1/X)·g(t),   g(t) = 1 ('none'), t ('linear'), 1 − (1 − t)³ ('cubic'),

  and the reduction is 1 / f(t). 'cubic' is the gradual pruning schedule of Zhu & Gupta (2017, "To prune, or not
  to prune"), applied to the MACs fraction: large steps early, while the network can still recover, small ones
  near the end. 'none' jumps to the target at the first event.

  Args:
    final: the MACs reduction X ≥ 1 of the last event.
    event: which event this is, 1-based (clipped to ``events``).
    events: how many events the schedule has (≥ 1).
    ramp: 'none', 'linear' or 'cubic'.

  Returns:
    The reduction for this event: 1 ≤ it ≤ X, non-decreasing in ``event``, X at ``event`` = ``events``.
  """
  if ramp not in RAMPS:
    raise ValueError(f"budget_ramp must be one of {RAMPS}, got {ramp!r}")
  t = min(max(event, 1), events) / events
  progress = {"none": 1.0, "linear": t, "cubic": 1.0 - (1.0 - t) ** 3}[ramp]
  return 1.0 / (1.0 - (1.0 - 1.0 / final) * progress)


__all__ = ["MacsCounter", "energy_keep", "breakpoints", "keep_counts", "RAMPS", "ramped_reduction"]
