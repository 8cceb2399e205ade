"""Every pruning method of jaxsvd, one module each, one convention for masks ({leaf path: bool mask}).

  rank          SVD rank pruning: floors, ``prune`` (slices U, s, V to the directions a strategy keeps)
  strategies    the rank strategies, one class each, registered by name (count | threshold | ratio | energy |
                budget): ``Strategy``, ``register``
  opt_state     optimizer-state surgery after a rank prune (re-initialize or slice), ``update_state``
  budget        the MACs-target search of the 'budget' strategy (``MacsCounter``: the model's cost as data)
  compress      data-aware compression's neutral half: error spectra, the params counter, ``allocate`` (the entry
                points: ``jaxsvd.linen.compress.compress``, ``jaxsvd.nnx.calibration.compress``)
  dynamic       dynamic pruning: the smallest |w| zeroed at every forward pass (threshold recomputed in jit),
                straight-through gradients
  masks         mask pruning (``torch.nn.utils.prune`` semantics), ``keep_pruned`` (optax; ``l1_subgradient`` is in
                ``jaxsvd.training.optim``)
  slimming      network slimming (Liu et al. 2017): one global |γ| threshold over the norm layers
  channels      physical channel pruning: variables sliced to kept channels (dense and SVD layers)
  from_scratch  pruning from scratch (Wang et al. 2020): gates on the random init, MACs-budget bisection; ``narrow``
                (uniform widths to a MACs budget)
  unstructured  a dense model's kernels to a parameter count: the fixed magnitude mask with its record and optimizer
                state (``prune_to_count``), the dynamic mask before it (``dynamic_apply``)
  schedule      when events fire (``Schedule``) and when fine-tuning begins (``Phases``)

A mask is a bool array shaped like its leaf (True = kept / selected) or a Python bool for the whole leaf, keyed
by the leaf's '/'-joined path (``jaxsvd.core.tree``). Framework-neutral: nothing here imports ``jaxsvd.linen``,
``jaxsvd.nnx``, ``flax.linen`` or ``flax.nnx`` (a framework builds the ``budget.MacsCounter``).
"""

from jaxsvd.pruning import budget as budget
from jaxsvd.pruning import channels as channels
from jaxsvd.pruning import compress as compress
from jaxsvd.pruning import dynamic as dynamic
from jaxsvd.pruning import from_scratch as from_scratch
from jaxsvd.pruning import masks as masks
from jaxsvd.pruning import opt_state as opt_state
from jaxsvd.pruning import rank as rank
from jaxsvd.pruning import schedule as schedule
from jaxsvd.pruning import slimming as slimming
from jaxsvd.pruning import strategies as strategies
from jaxsvd.pruning import unstructured as unstructured
from jaxsvd.pruning.rank import Floors as Floors
from jaxsvd.pruning.rank import PruneReport as PruneReport
from jaxsvd.pruning.rank import prune as prune
from jaxsvd.pruning.schedule import Phases as Phases
from jaxsvd.pruning.schedule import Schedule as Schedule
from jaxsvd.pruning.strategies import Strategy as Strategy

__all__ = ["Floors", "Phases", "PruneReport", "Schedule", "Strategy", "prune", "budget", "channels", "compress",
           "dynamic", "from_scratch", "masks", "opt_state", "rank", "schedule", "slimming", "strategies", "unstructured"]
