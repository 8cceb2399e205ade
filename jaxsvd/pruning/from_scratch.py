"""Pruning from scratch (Wang et al. 2020, "Pruning from Scratch", AAAI): the pruned architecture is found on
a *randomly initialized* network, then trained from scratch.

1. Gate search: every residual block's inner channels get a gate α (``BasicBlock(gated=True)``: the bn1
   output is multiplied by α, α₀ = 1). The weights stay at their random init; only the gates learn,
   with loss CE + λ·Σ|α| (``gate_optimizer``: the L1 subgradient plus an optimizer on the gates alone).
2. Budget: one global threshold t on |α|; a block keeps its channels with |α| > t (at least one).
   ``widths_for_budget`` picks the smallest t whose architecture's MACs ≤ budget (binary search over
   the sorted |α|; MACs fall monotonically as t rises).
3. The result, {block path: inner width}, is data (``build_model(..., inner_widths=)``, checkpoint
   metadata); that architecture is trained from a fresh random init.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import optax

from jaxsvd.pruning import masks as masks_lib
from jaxsvd.tree import leaves_by_path
from jaxsvd.validate import check_in_range, check_nonnegative

GATE = "gate"


def _is_gate(path: str, leaf) -> bool:
  del leaf
  return path.rsplit("/", 1)[-1] == GATE


def gate_masks(params) -> masks_lib.Masks:
  """Whole-leaf masks {'<block>/gate': True} of every gate leaf.

  Args:
    params: the gated model's params (gates are the leaves named 'gate').

  Returns:
    {gate leaf path: True}.
  """
  return masks_lib.select(params, _is_gate)


def gate_optimizer(params, learning_rate: float, l1: float) -> optax.GradientTransformation:
  """g ← g + λ·sign(α) on the gates, Adam on the gates, zero updates for every other param (frozen weights).

  Args:
    params: the gated model's params (the gates are found in them by name: leaves called 'gate').
    learning_rate: Adam's learning rate on the gates.
    l1: λ of the L1 penalty on the gates.

  Returns:
    The optax transform: ``l1_subgradient(l1, gates)`` chained with ``multi_transform`` (Adam on the gates,
    ``set_to_zero`` elsewhere).

  Raises:
    ValueError: if ``learning_rate`` or ``l1`` is negative.
  """
  check_nonnegative("from_scratch.l1", l1)
  check_nonnegative("from_scratch.learning_rate", learning_rate)
  gate = gate_masks(params)
  return optax.chain(masks_lib.l1_subgradient(l1, gate),
                     optax.multi_transform({"gate": optax.adam(learning_rate), "frozen": optax.set_to_zero()},
                                           masks_lib.label_fn(gate, "gate", "frozen")))


def gates(params) -> dict[str, np.ndarray]:
  """{block path: |α|} of every gated block.

  Args:
    params: the gated model's params.

  Returns:
    {path of the gate's parent: |gate| as a float64 numpy array}.
  """
  return {path.rsplit("/", 1)[0]: np.abs(np.asarray(leaf, np.float64))
          for path, leaf in leaves_by_path(params).items() if _is_gate(path, leaf)}


def widths_at(gate_values: Mapping[str, np.ndarray], threshold: float) -> dict[str, int]:
  """Inner width per block: its gates above ``threshold``, at least 1.

  Args:
    gate_values: {block path: |α|}, e.g. from ``gates``.
    threshold: the global threshold t.

  Returns:
    {block path: max(1, #{j : |α_j| > t})}.
  """
  return {path: max(1, int(np.sum(g > threshold))) for path, g in gate_values.items()}


def widths_for_budget(gate_values: Mapping[str, np.ndarray], macs_of: Callable[[dict[str, int]], int],
                      budget: float) -> dict[str, int]:
  """The widest architecture (one global gate threshold) whose MACs ≤ ``budget`` × the unpruned MACs.

  ``macs_of(widths)`` gives an architecture's MACs (e.g. via ``flops.count``). Raises if even one channel
  per block exceeds the budget.

  Args:
    gate_values: {block path: |α|}, e.g. from ``gates``.
    macs_of: ``macs_of({block path: width}) -> MACs``; assumed non-increasing as widths shrink.
    budget: the fraction of the unpruned MACs allowed, in (0, 1].

  Returns:
    ``widths_at(gate_values, t)`` for the smallest t (−inf or one of the |α| values) with
    MACs ≤ budget · MACs(all gates kept), found by binary search.

  Raises:
    ValueError: if ``budget`` ∉ (0, 1], there are no gates, or one channel per block exceeds the budget.
  """
  check_in_range("from_scratch.budget", budget, 0.0, 1.0, low_closed=False, high_closed=True)
  if not gate_values:
    raise ValueError("from_scratch: the params have no gates (build the model with gated=True)")
  full = macs_of({p: g.size for p, g in gate_values.items()})
  limit = budget * full
  # Candidate thresholds: below every gate (keep all), then each gate value (drop it and everything smaller).
  candidates = np.concatenate([[-np.inf], np.unique(np.concatenate(list(gate_values.values())))])
  lo, hi = 0, len(candidates) - 1
  if macs_of(widths_at(gate_values, candidates[hi])) > limit:
    raise ValueError(f"from_scratch.budget={budget}: even one channel per block needs more MACs")
  while lo < hi:  # smallest index whose architecture fits
    mid = (lo + hi) // 2
    if macs_of(widths_at(gate_values, candidates[mid])) <= limit:
      hi = mid
    else:
      lo = mid + 1
  return widths_at(gate_values, candidates[lo])
