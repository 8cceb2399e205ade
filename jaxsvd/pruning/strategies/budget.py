"""The 'budget' rank strategy: one global energy for all layers, bisected so the model has ≤ dense MACs / X.

The search itself (breakpoints, bisection, the greedy fill of the MACs left under the target) and the online ramp
are ``jaxsvd.pruning.budget``'s; this module is the strategy that configs and ``prune`` resolve by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from jaxsvd.pruning import budget as search
from jaxsvd.pruning.strategies.base import Strategy, register


@register("budget")
@dataclasses.dataclass(frozen=True)
class Budget(Strategy):
  """The pruned model has ≤ dense MACs / ``macs_reduction`` (a number ≥ 1; else ValueError at construction).

  Global (one decision over all layers, ``prune(..., macs=)``), and it ramps: ``ramped`` gives the target of one
  event of a schedule (``budget.ramped_reduction``).
  """
  macs_reduction: float = 2.0
  is_global = True
  needs_macs = True
  can_ramp = True

  def __post_init__(self):
    if not isinstance(self.macs_reduction, (int, float)) or not self.macs_reduction >= 1.0:
      raise ValueError(f"macs_reduction must be a number >= 1, got {self.macs_reduction!r}")

  def keep_counts(self, s_sorted: Mapping[str, np.ndarray], floor: Callable[[str, int], int],
                  macs: search.MacsCounter | None = None) -> dict[str, int]:
    """Every layer's k at the smallest global energy that meets the target, the rest of the budget filled.

    Args:
      s_sorted: {layer path: |s| sorted descending}, 1-D (stacked layers are not supported yet).
      floor: (path, k) → k raised to the floors.
      macs: the model's MACs counter.

    Returns:
      {layer path: k} (``budget.keep_counts``).

    Raises:
      ValueError: one line if ``macs`` is None, a layer is stacked, or the floors cannot meet the target.
    """
    if macs is None:
      raise ValueError("strategy='budget' needs the model's MACs: prune(..., macs=budget.MacsCounter...)")
    if stacked := sorted(p for p, s in s_sorted.items() if s.ndim > 1):
      raise ValueError(f"strategy='budget' does not support stacked layers (nn.scan/nn.vmap, groups) yet: {stacked}")
    return search.keep_counts(s_sorted, floor, macs, self.macs_reduction)[0]

  def ramped(self, event: int, events: int, ramp: str) -> Budget:
    """This strategy with the MACs reduction of ``ramp`` at the ``event``-th of ``events`` events.

    Args:
      event: the event's 1-based index in the schedule.
      events: how many events the schedule has.
      ramp: 'none' | 'linear' | 'cubic' (``budget.RAMPS``).

    Returns:
      A ``Budget`` with ``macs_reduction`` = ``budget.ramped_reduction(macs_reduction, event, events, ramp)``.
    """
    return dataclasses.replace(self, macs_reduction=search.ramped_reduction(self.macs_reduction, event, events, ramp))


__all__ = ["Budget"]
