"""jaxsvd: SVD-form training and pruning while training, in JAX (Yang et al. 2020, arXiv 2004.09031).

The names a user imports; everything else lives in the submodules listed in README.md's Architecture section.

  layers        DenseSVD, ConvSVD                            W = U·diag(s)·Vᵀ, channel | spatial, 3 modes
  models        build_model, SVDSpec                         the zoo (CIFAR ResNets, ResNet-18, VGG)
  svdify        SVDModel, decompose                          any linen model's linear layers in SVD form (a module)
                (the function is ``jaxsvd.svdify.svdify``: ``jaxsvd.svdify`` is the module)
  factors       (module)                                     matrix views of kernels, both executions, their MACs
  svdify_nnx    (module: svdify, ranks, prune, regularization)  Flax NNX models in SVD form (in-place graph surgery);
                nnx_layers (LinearSVD, ConvSVD, ...), checkpoint_nnx (save, restore)
  losses        RegularizerConfig, make_loss_fn              CE + λo·orthogonality + λs·sparsity
  optim         make_optimizer                               param groups, schedules, clipping, BN-γ L1
  structure     ranks, svd_layers, norm_layers               the architecture read back from params
  pruning       prune, Strategy, Floors, Schedule, Phases    rank pruning + masks, slimming, from_scratch
  record        Architecture                                 the architecture record (JSON in checkpoints)
  checkpoint    save, restore, manager                       Orbax checkpoints that own their record
  inference     load_for_inference                           a checkpoint as a jitted, autotuned function
  train_state   TrainState, train_step, eval_step            pure steps (flax-examples style)
"""

__version__ = "0.2.0"

from jaxsvd import (  # noqa: E402  (submodules as namespaces: jaxsvd.pruning.slimming, jaxsvd.checkpoint.save, ...)
    checkpoint,
    checkpoint_nnx,
    data,
    export,
    factors,
    flops,
    inference,
    layers,
    losses,
    models,
    nnx_layers,
    optim,
    parallel,
    pruning,
    record,
    regularizers,
    structure,
    svdify,
    svdify_nnx,
    train_state,
    tree,
    xla_options,
)
from jaxsvd.checkpoint import CheckpointError, restore  # noqa: E402
from jaxsvd.inference import load_for_inference  # noqa: E402
from jaxsvd.layers import ConvSVD, DenseSVD  # noqa: E402
from jaxsvd.losses import RegularizerConfig, make_loss_fn  # noqa: E402
from jaxsvd.models import SVDSpec, build_model  # noqa: E402
from jaxsvd.optim import make_optimizer  # noqa: E402
from jaxsvd.pruning import Floors, Phases, PruneReport, Schedule, Strategy, prune  # noqa: E402
from jaxsvd.record import Architecture  # noqa: E402
from jaxsvd.structure import norm_layers, ranks, svd_layers  # noqa: E402
from jaxsvd.svdify import SVDModel, decompose  # noqa: E402
from jaxsvd.train_state import TrainState, eval_step, train_step  # noqa: E402

__all__ = [
    # layers and models
    "ConvSVD", "DenseSVD", "SVDSpec", "build_model", "SVDModel", "decompose",
    # objective and optimizer
    "RegularizerConfig", "make_loss_fn", "make_optimizer",
    # the architecture as data
    "Architecture", "ranks", "svd_layers", "norm_layers",
    # pruning
    "prune", "Strategy", "Floors", "Schedule", "Phases", "PruneReport",
    # checkpoints and inference
    "restore", "CheckpointError", "load_for_inference",
    # training
    "TrainState", "train_step", "eval_step",
    # submodules
    "checkpoint", "data", "export", "factors", "flops", "inference", "layers", "losses", "models", "optim", "parallel",
    "pruning", "record", "regularizers", "structure", "svdify", "train_state", "tree", "xla_options",
    "checkpoint_nnx", "nnx_layers", "svdify_nnx",
]
