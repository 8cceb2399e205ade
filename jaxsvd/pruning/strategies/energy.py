"""The 'energy' rank strategy: keep the directions that hold all but a fraction e of Σ s², per layer.

  smallest_k:        the smallest k with E_k ≥ (1 − e)·E, E_k = Σ_{i≤k} s_i², E = E_r (1e-12 relative tolerance;
                     ``budget.energy_keep``, the rule the 'budget' strategy bisects over);
  official_cifar:    the official CIFAR code: k₀ = the smallest k with E_k / E ≥ 1 − e, threshold t = s_{k₀} (the
                     last kept), keep every s with |s| ≥ t (ties at t are kept: its mask prunes |s| < t);
  official_imagenet: the official ImageNet code: k₀ = the smallest k with E_k / E > 1 − e, then as above;
                     e = 0 gives t = 0, so nothing is pruned.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxsvd.core.validate import check_choice, check_in_range
from jaxsvd.pruning import budget
from jaxsvd.pruning.strategies.base import Strategy, register

ENERGY_RULES = ("smallest_k", "official_cifar", "official_imagenet")


@register("energy")
@dataclasses.dataclass(frozen=True)
class Energy(Strategy):
  """Keep all but the fraction e = ``energy`` of Σ s² under ``energy_rule`` (module doc).

  Construction raises ValueError unless energy ∈ (0, 1) ([0, 1) for the official rules) and energy_rule is one of
  ``ENERGY_RULES``.
  """
  energy: float = 0.1  # e: the fraction of Σ s² that may be dropped
  energy_rule: str = "smallest_k"

  def __post_init__(self):
    check_choice("energy_rule", self.energy_rule, ENERGY_RULES)
    official = self.energy_rule != "smallest_k"
    check_in_range("energy", self.energy, 0.0, 1.0, low_closed=official, high_closed=False)

  def keep_count(self, s_sorted: np.ndarray) -> int:
    """The k of ``energy_rule`` at e = ``energy``.

    Args:
      s_sorted: one layer's |s| sorted descending.

    Returns:
      That k; 0 if s is empty or all zero.
    """
    cumulative = np.cumsum(s_sorted**2)
    if len(cumulative) == 0 or cumulative[-1] <= 0:
      return 0
    rule, e = self.energy_rule, self.energy
    if rule == "smallest_k":
      return budget.energy_keep(s_sorted, e)
    if rule == "official_imagenet" and e == 0:
      return len(s_sorted)
    fraction = cumulative / cumulative[-1]
    reached = fraction > 1.0 - e if rule == "official_imagenet" else fraction >= 1.0 - e
    k0 = int(np.argmax(reached)) + 1 if reached.any() else len(s_sorted)
    return int(np.sum(s_sorted >= s_sorted[k0 - 1]))


__all__ = ["ENERGY_RULES", "Energy"]
