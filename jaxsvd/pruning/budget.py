"""Budget-targeted SVD rank pruning: one global energy, bisected so the model meets a MACs target.

The 'budget' strategy (``rank.Strategy('budget', macs_reduction=X)``) keeps, in every SVD layer, the smallest k with
Σ_{i≤k} s_i² ≥ (1 − e)·Σ_i s_i² (the 'energy' rule, then the floors) for *one* e shared by all layers, and picks
the smallest e at which the whole model's MACs (``jaxsvd.flops``: each SVD layer at its cheaper execution) are at
most  target = dense MACs / X  (dense: the same model with every SVD layer dense). Per layer the kept rank is a
non-increasing step function of e and MACs are non-decreasing in every rank, so the model's MACs are a
non-increasing step function of e that changes only where some layer's k does:
at e_{l,k} = 1 − Σ_{i≤k} s_{l,i}² / Σ_i s_{l,i}². The search bisects over these sorted breakpoints (≈ log₂ of the
total rank MACs evaluations). Like AIMET's greedy compression-ratio search, but with one global knob.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np

from jaxsvd import flops
from jaxsvd.record import Architecture

_TOLERANCE = 1e-12  # as rank.keep_count_by_energy


@dataclasses.dataclass(frozen=True)
class MacsCounter:
  """MACs per example of a model at given SVD ranks (``at_ranks``) and of its dense model (``dense``)."""
  at_ranks: Callable[[Mapping[str, int]], int]
  dense: int

  @classmethod
  def for_architecture(cls, architecture: Architecture) -> MacsCounter:
    """Counts with ``flops.count`` on the record's model (at the ranks asked) and on ``architecture.dense()``.

    Args:
      architecture: the record of an SVD model.

    Returns:
      The ``MacsCounter``.
    """
    shape = tuple(architecture.input_shape)
    dense = flops.count(architecture.dense().build_model(), shape).macs
    return cls(lambda ranks: flops.count(architecture.replace(ranks=dict(ranks)).build_model(), shape).macs, dense)


def energy_keep(s_sorted: np.ndarray, energy: float) -> int:
  """The 'energy' rule at e = ``energy`` ∈ [0, 1]: smallest k with Σ_{i≤k} s_i² ≥ (1 − e)·Σ s_i² (0 if s = 0)."""
  cumulative = np.cumsum(s_sorted**2)
  if len(cumulative) == 0 or cumulative[-1] <= 0:
    return 0
  return int(np.argmax(cumulative >= (1.0 - energy) * cumulative[-1] * (1 - _TOLERANCE))) + 1


def breakpoints(s_sorted: Mapping[str, np.ndarray]) -> np.ndarray:
  """Every e at which some layer's energy-rule k changes, plus 0, sorted ascending and unique."""
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
  return ranks_at(e), e, cost(e), target
