"""jaxsvd: SVD-form training and pruning while training, in JAX (Yang et al. 2020, arXiv 2004.09031).

The names most users need are here; each subpackage lists the rest in its own ``__all__``.

  core        framework-free: the SVD math, matrix views, structure, regularizers, ``SVDSpec``, ``Architecture``
  training    ``make_loss_fn``, ``make_optimizer``, ``TrainState``, ``train_step``, data parallelism
  pruning     rank pruning (``prune``, ``Strategy``), masks, slimming, channels, pruning from scratch
  linen       ``DenseSVD``, ``ConvSVD``, ``svdify`` (any linen model), ``decompose``, flops  (loaded on first use)
  nnx         NNX SVD layers and in-place ``svdify`` / ``prune`` / ``regularization``     (loaded on first use)
  models      the zoo (CIFAR ResNets, ResNet-18/50, VGG): ``build_model``                (loaded on first use)
  checkpoint  Orbax checkpoints that own their record: ``save``, ``restore``                 (loaded on first use)
  deploy      BatchNorm folding, the ``jax.export`` artifact, ``load_for_inference``         (loaded on first use)
  data        datasets, batches, grain streaming                                           (loaded on first use)

``import jaxsvd`` loads the framework-neutral ``core``, ``training`` and ``pruning``. The frameworks are peers:
``linen`` (and the linen zoo, ``models``) and ``nnx`` are imported when first touched (``jaxsvd.linen``,
``jaxsvd.svdify``, ``from jaxsvd import nnx``), so ``import jaxsvd.nnx`` loads no linen code of ours and
``import jaxsvd.linen`` no NNX; ``checkpoint``, ``deploy`` and ``data`` (Orbax, grain, tensorflow-datasets) too
(``jaxsvd.checkpoint``, ``jaxsvd.restore``, ``from jaxsvd import data``), so ``import jaxsvd`` stays cheap.
"""

import importlib

from jaxsvd import core as core
from jaxsvd import pruning as pruning
from jaxsvd import training as training
from jaxsvd.core import Architecture as Architecture
from jaxsvd.core import SVDSpec as SVDSpec
from jaxsvd.core import norm_layers as norm_layers
from jaxsvd.core import ranks as ranks
from jaxsvd.core import svd_layers as svd_layers
from jaxsvd.pruning import Floors as Floors
from jaxsvd.pruning import Phases as Phases
from jaxsvd.pruning import PruneReport as PruneReport
from jaxsvd.pruning import Schedule as Schedule
from jaxsvd.pruning import Strategy as Strategy
from jaxsvd.pruning import prune as prune
from jaxsvd.training import RegularizerConfig as RegularizerConfig
from jaxsvd.training import TrainState as TrainState
from jaxsvd.training import eval_step as eval_step
from jaxsvd.training import make_loss_fn as make_loss_fn
from jaxsvd.training import make_optimizer as make_optimizer
from jaxsvd.training import train_step as train_step
from jaxsvd.version import __version__ as __version__

# Subpackages of one framework or that import heavy libraries, and names from them, resolved on first access
# (PEP 562): the frameworks are peers, so the root imports neither.
_LAZY_SUBPACKAGES = ("checkpoint", "data", "deploy", "linen", "models", "nnx")
_LAZY_NAMES = {"CheckpointError": "checkpoint", "restore": "checkpoint", "load_for_inference": "deploy",
               "ConvSVD": "linen", "DenseSVD": "linen", "SVDModel": "linen", "decompose": "linen", "svdify": "linen",
               "build_model": "models"}


def __getattr__(name: str):
  """Imports a lazily loaded subpackage (or a name of one) on first access.

  Args:
    name: the attribute asked of ``jaxsvd``.

  Returns:
    The subpackage, or the name from its subpackage.

  Raises:
    AttributeError: if ``name`` is neither.
  """
  if name in _LAZY_SUBPACKAGES:
    return importlib.import_module(f"jaxsvd.{name}")
  if name in _LAZY_NAMES:
    return getattr(importlib.import_module(f"jaxsvd.{_LAZY_NAMES[name]}"), name)
  raise AttributeError(f"module 'jaxsvd' has no attribute {name!r}")


def __dir__() -> list[str]:
  """The module's names, the lazily loaded ones included."""
  return sorted({*globals(), *_LAZY_SUBPACKAGES, *_LAZY_NAMES})


__all__ = [
    # layers, models and conversion
    "ConvSVD", "DenseSVD", "SVDSpec", "build_model", "svdify", "SVDModel", "decompose",
    # objective and optimizer
    "RegularizerConfig", "make_loss_fn", "make_optimizer",
    # the architecture as data
    "Architecture", "ranks", "svd_layers", "norm_layers",
    # pruning
    "prune", "Strategy", "Floors", "Schedule", "Phases", "PruneReport",
    # checkpoints and inference (loaded on first use)
    "restore", "CheckpointError", "load_for_inference",
    # training
    "TrainState", "train_step", "eval_step",
]  # The subpackages are attributes, not in __all__: ``from jaxsvd import *`` must not bind ``nnx`` over flax's.
