"""The 'threshold' rank strategy: keep the directions with |s| ≥ t, t absolute or relative to max |s|."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsvd.core.validate import check_choice, check_nonnegative
from jaxsvd.pruning.strategies.base import Strategy, register

THRESHOLD_MODES = ("absolute", "relative")


@register("threshold")
@dataclasses.dataclass(frozen=True)
class Threshold(Strategy):
  """k = #{|s_i| ≥ t}: t = ``threshold`` (``threshold_mode='absolute'``) or ``threshold``·max|s| ('relative').

  Construction raises ValueError on threshold < 0 or a threshold_mode not in ``THRESHOLD_MODES``.
  """
  threshold: float = 1e-3
  threshold_mode: str = "absolute"

  def __post_init__(self):
    check_nonnegative("threshold", self.threshold)
    check_choice("threshold_mode", self.threshold_mode, THRESHOLD_MODES)

  def keep_count(self, s_sorted: np.ndarray) -> int:
    """#{i : |s_i| ≥ t}.

    Args:
      s_sorted: one layer's |s| sorted descending.

    Returns:
      The count, with t = threshold ('absolute', or an empty s) or t = threshold · max|s| ('relative').
    """
    relative = self.threshold_mode == "relative" and len(s_sorted)
    t = self.threshold * (s_sorted[0] if relative else 1.0)
    return int(np.sum(s_sorted >= t))


__all__ = ["THRESHOLD_MODES", "Threshold"]
