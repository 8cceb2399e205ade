"""Training: the loss, the optimizer, pure train/eval steps, data parallelism (pmap or sharding, multi-host).

  losses        ``make_loss_fn``: CE + λo·orthogonality + λs·sparsity (``RegularizerConfig``)
  optim         ``make_optimizer``: param groups, schedules, clipping, BN-γ L1 (optax)
  transforms    ``add_svd_regularization``: the SVD regularizers as an optax transform (any optax chain, any loop)
  train_state   ``TrainState``, ``train_step``, ``eval_step`` (pure, jittable), ``apply_in_mode``
  parallel      ``DataParallel``: pmap or sharding over a mesh, multi-host batches
  distributed   ``initialize``: ``jax.distributed`` from the cluster's environment
  recompile     ``CountingJit``: jit with a compile counter (one compile per shape set)
  xla_options   the XLA:CPU option sets measured faster, ``autotuned_jit``

Framework-neutral: nothing here imports ``jaxsvd.linen``, ``jaxsvd.nnx``, ``flax.linen`` or ``flax.nnx``.
"""

from jaxsvd.training import distributed as distributed
from jaxsvd.training import losses as losses
from jaxsvd.training import optim as optim
from jaxsvd.training import parallel as parallel
from jaxsvd.training import recompile as recompile
from jaxsvd.training import train_state as train_state
from jaxsvd.training import transforms as transforms
from jaxsvd.training import xla_options as xla_options
from jaxsvd.training.losses import RegularizerConfig as RegularizerConfig
from jaxsvd.training.losses import make_loss_fn as make_loss_fn
from jaxsvd.training.optim import make_optimizer as make_optimizer
from jaxsvd.training.train_state import TrainState as TrainState
from jaxsvd.training.train_state import eval_step as eval_step
from jaxsvd.training.train_state import train_step as train_step
from jaxsvd.training.transforms import add_svd_regularization as add_svd_regularization

__all__ = ["RegularizerConfig", "TrainState", "add_svd_regularization", "eval_step", "make_loss_fn", "make_optimizer",
           "train_step", "distributed", "losses", "optim", "parallel", "recompile", "train_state", "transforms",
           "xla_options"]
