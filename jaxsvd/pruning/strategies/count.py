"""The 'count' rank strategy: every layer drops a fixed number of directions, k = r − prune_by."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsvd.core.validate import check_min_int
from jaxsvd.pruning.strategies.base import Strategy, register


@register("count")
@dataclasses.dataclass(frozen=True)
class Count(Strategy):
  """k = r − ``prune_by`` (an int ≥ 0; may reach ≤ 0, which the floors raise)."""
  prune_by: int = 1

  def __post_init__(self):
    check_min_int("prune_by", self.prune_by, 0)

  def keep_count(self, s_sorted: np.ndarray) -> int:
    """r − prune_by.

    Args:
      s_sorted: one layer's |s| sorted descending (only its length r is read).

    Returns:
      r − prune_by.
    """
    return len(s_sorted) - self.prune_by


__all__ = ["Count"]
