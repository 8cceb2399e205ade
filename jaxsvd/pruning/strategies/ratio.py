"""The 'ratio' rank strategy: every layer keeps the same fraction of its directions, k = ceil(r · (1 − reduce_by))."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxsvd.core.validate import check_in_range
from jaxsvd.pruning.strategies.base import Strategy, register


@register("ratio")
@dataclasses.dataclass(frozen=True)
class Ratio(Strategy):
  """k = ceil(r · (1 − ``reduce_by``)), reduce_by ∈ [0, 1) (else ValueError at construction)."""
  reduce_by: float = 0.1

  def __post_init__(self):
    check_in_range("reduce_by", self.reduce_by, 0.0, 1.0, low_closed=True, high_closed=False)

  def keep_count(self, s_sorted: np.ndarray) -> int:
    """ceil(r · (1 − reduce_by)).

    Args:
      s_sorted: one layer's |s| sorted descending (only its length r is read).

    Returns:
      ceil(r · (1 − reduce_by)), with a 1e-9 tolerance against float error.
    """
    return math.ceil(len(s_sorted) * (1.0 - self.reduce_by) - 1e-9)


__all__ = ["Ratio"]
