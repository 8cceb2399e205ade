"""Every pruning method of jaxsvd, one module each, one convention for masks ({leaf path: bool mask}).

  rank          SVD rank pruning: strategies (count | threshold | ratio | energy | budget), floors, ``prune``
  opt_state     optimizer-state surgery after a rank prune (re-initialize or slice), ``update_state``
  budget        the MACs-target search of the 'budget' strategy
  masks         mask pruning (``torch.nn.utils.prune`` semantics), ``keep_pruned`` / ``l1_subgradient`` (optax)
  slimming      network slimming (Liu et al. 2017): one global |γ| threshold over the norm layers
  channels      physical channel pruning: variables sliced to kept channels (dense and SVD layers)
  from_scratch  pruning from scratch (Wang et al. 2020): gates on the random init, MACs-budget bisection
  schedule      when events fire (``Schedule``) and when fine-tuning begins (``Phases``)

A mask is a bool array shaped like its leaf (True = kept / selected) or a Python bool for the whole leaf, keyed
by the leaf's '/'-joined path (``jaxsvd.core.tree``).
"""

from jaxsvd.pruning import channels, from_scratch, masks, opt_state, rank, schedule, slimming
from jaxsvd.pruning.rank import Floors, PruneReport, Strategy, prune
from jaxsvd.pruning.schedule import Phases, Schedule

__all__ = ["Floors", "Phases", "PruneReport", "Schedule", "Strategy", "channels", "from_scratch", "masks",
           "opt_state", "prune", "rank", "schedule", "slimming"]
