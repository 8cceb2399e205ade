"""Rank strategies: how many singular directions each SVD layer keeps, one small class per strategy, by name.

  base       ``Strategy`` (the base class; ``Strategy(name, **fields)`` builds the registered one), ``register``,
             ``resolve``, ``names``, ``config_defaults``
  count      'count'      k = r − prune_by
  threshold  'threshold'  k = #{|s_i| ≥ t}, t = threshold (absolute) or threshold·max|s| (relative)
  ratio      'ratio'      k = ceil(r · (1 − reduce_by))
  energy     'energy'     the smallest k keeping (1 − e) of Σ s² (or the official code's rules, ties kept)
  budget     'budget'     'energy' with one global e, bisected so the model has ≤ dense MACs / macs_reduction

A new strategy is one module: a frozen dataclass subclass of ``Strategy`` with its fields (each with a default),
its validation in ``__post_init__`` and its ``keep_count`` (or ``keep_counts`` with ``is_global = True``),
decorated with ``@register('name')``; configs then name it (``pruning.strategy='name'``) and
``experiments/configs/default.py`` gets its fields from ``config_defaults``. docs/pruning.md, "Adding a rank
strategy", shows one.
"""

from jaxsvd.pruning.strategies import base as base
from jaxsvd.pruning.strategies import budget as budget
from jaxsvd.pruning.strategies import count as count
from jaxsvd.pruning.strategies import energy as energy
from jaxsvd.pruning.strategies import ratio as ratio
from jaxsvd.pruning.strategies import threshold as threshold
from jaxsvd.pruning.strategies.base import Strategy as Strategy
from jaxsvd.pruning.strategies.base import config_defaults as config_defaults
from jaxsvd.pruning.strategies.base import names as names
from jaxsvd.pruning.strategies.base import register as register
from jaxsvd.pruning.strategies.base import resolve as resolve
from jaxsvd.pruning.strategies.base import unregister as unregister
from jaxsvd.pruning.strategies.budget import Budget as Budget
from jaxsvd.pruning.strategies.count import Count as Count
from jaxsvd.pruning.strategies.energy import Energy as Energy
from jaxsvd.pruning.strategies.ratio import Ratio as Ratio
from jaxsvd.pruning.strategies.threshold import Threshold as Threshold

__all__ = ["Strategy", "register", "unregister", "resolve", "names", "config_defaults", "Count", "Threshold",
           "Ratio", "Energy", "Budget", "base", "count", "threshold", "ratio", "energy", "budget"]
