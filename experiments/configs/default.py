"""Defaults shared by every experiment config (paper: ResNet-20 channel-wise, Hoyer, Adam 1e-3)."""

import ml_collections

from jaxsvd.pruning import strategies


def get_config() -> ml_collections.ConfigDict:
  """CIFAR-10 ResNet-20, channel-wise SVD, Hoyer λs = 0.003, Adam 1e-3, 164 epochs, final prune; other methods off."""
  c = ml_collections.ConfigDict()
  # What the run trains for: a module of experiments/tasks/ (its data, model, loss and metrics; docs/design.md).
  c.task = "image_classification"
  c.model = "resnet20"
  c.dataset = "cifar10"
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.data_source = "auto"  # auto | local | tfds
  c.augment = True
  c.train_subset = ml_collections.FieldReference(None, field_type=int)  # first N examples (tests)
  c.test_subset = ml_collections.FieldReference(None, field_type=int)
  c.max_steps_per_epoch = ml_collections.FieldReference(None, field_type=int)
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 164
  c.seed = 0
  c.parallel = "none"  # none | pmap | sharding
  c.num_devices = ml_collections.FieldReference(None, field_type=int)
  # CIFAR ResNet options {shortcut: 'A' | 'B', block: 'basic' | 'bottleneck', bottleneck_relu: bool}; None = defaults.
  c.model_options = ml_collections.FieldReference(None, field_type=dict)
  # The dtype convs and matmuls run in: 'float32' | 'bfloat16' (params, optimizer state, BN statistics, loss,
  # regularizers and pruning energies stay float32; products are summed in float32). docs/accelerators.md.
  c.compute_dtype = "float32"
  # normalization: 'auto' (fixed per-dataset constants where known, e.g. the official CIFAR-10 mean/std; else
  # computed from the training images) | 'fixed' | 'computed'.
  c.normalization = "auto"
  # Start from another run's workdir (its latest checkpoint): architecture from its record, params and batch stats,
  # fresh optimizer, epoch 0 (the official recipe's stages). Ignored when this workdir already has a checkpoint.
  c.init_from = ml_collections.FieldReference(None, field_type=str)
  # Streamed datasets (imagenet2012: tfds with data_source='tfds', else data_dir/{train,val}/<class>/*.jpg):
  # crop size, grain reader threads and prefetched examples per process (jaxsvd.data.streaming).
  c.input = ml_collections.ConfigDict(dict(image_size=224, threads=16, prefetch=512))

  _add_objective(c)
  _add_pruning_methods(c)
  # restore_fallback: resume from the previous step when the latest fails its checksums (it is moved to
  # corrupt_checkpoints/); off: a damaged latest step is an error. every_steps: also a checkpoint every N optimizer
  # steps inside epochs (0: at epoch ends only). SIGTERM, SIGINT and stop_signal ('none': only those two) save the
  # current step and stop (exit code 75); with several processes they agree every stop_sync_every steps.
  c.checkpoint = ml_collections.ConfigDict(dict(max_to_keep=2, async_save=True, restore_fallback=False, every_steps=0,
                                                stop_signal="SIGUSR1", stop_sync_every=10))
  c.tensorboard = True
  c.plots = True
  c.progress_bar = True
  return c


def _add_objective(c: ml_collections.ConfigDict) -> None:
  """The SVD layers, the regularizers and the optimizer."""
  # sigma: 'signed' (W = U·diag(s)·Vᵀ) | 'abs' (the official forward, U·diag(|s|)·Vᵀ); init: 'svd_of_he' | 'official'
  # (kaiming-normal factors, s ~ N(0, 1)); dense_strided: keep stride > 1 convs dense (the official --svd_s1).
  c.svd = ml_collections.ConfigDict(dict(
      enabled=True, decomposition="channel", mode="auto", default_rank=None, dense_first=True, dense_last=True,
      sigma="signed", init="svd_of_he", dense_strided=False))
  c.svd.default_rank = ml_collections.FieldReference(None, field_type=int)
  # every > 1: orthogonality + sparsity only every N steps, weighted N·λ (lazy regularization, losses.py).
  c.reg = ml_collections.ConfigDict(dict(orthogonality=1.0, sparsity=0.003, sparsity_type="hoyer", l2=0.0, every=1))
  c.optimizer = ml_collections.ConfigDict(dict(
      optimizer="adam", learning_rate=1e-3, momentum=0.9, nesterov=False, weight_decay=0.0,
      schedule="multistep", milestones=(0.5, 0.75), milestone_epochs=(), decay_factor=0.1, warmup_epochs=0,
      clip="none", clip_value=1.0, bn_l1=0.0, groups={}))


def _add_pruning_methods(c: ml_collections.ConfigDict) -> None:
  """Fine-tuning, online and final rank pruning, network slimming, masks, narrow widths, widths and pruning from
  scratch (all off but the final prune)."""
  # The last `finetune_epochs` epochs fine-tune: sparsity terms off (λs = 0), no pruning (jaxsvd.pruning.Phases).
  c.finetune_epochs = 0
  # Online SVD rank pruning during training (this project's default; the paper prunes once at the end). `strategy` names
  # one of jaxsvd.pruning.strategies; every registered strategy's fields with their defaults (only the named one's
  # are read), floors (Floors), optimizer-state policy (reinit | slice) and the schedule: after
  # epochs start, start + every, ... ≤ stop (default: the last epoch before fine-tuning) (Schedule). strategy="budget":
  # one global energy bisected so the model has ≤ dense MACs / macs_reduction; rank_multiple rounds kept ranks up.
  # budget_ramp 'linear' | 'cubic' reaches macs_reduction gradually, at the schedule's last event (Zhu & Gupta
  # 2017; jaxsvd.pruning.budget.ramped_reduction); 'none': the target at the first event.
  c.pruning = ml_collections.ConfigDict(dict(
      enabled=False, strategy="energy", **_strategy_fields(energy=0.001), min_rank=1, min_decay=0.0, rank_multiple=1,
      opt_state="reinit", every=1, start=1, budget_ramp="none"))
  c.pruning.stop = ml_collections.FieldReference(None, field_type=int)
  # Final SVD rank prune (paper: by energy) after the last training epoch, before fine-tuning; same fields.
  # energy_rule: 'smallest_k' | 'official_cifar' | 'official_imagenet' (ties with the last kept s are kept).
  c.final_prune = ml_collections.ConfigDict(dict(
      enabled=True, strategy="energy", **_strategy_fields(energy=0.01), min_rank=1, min_decay=0.0, rank_multiple=1,
      opt_state="reinit"))
  # Network slimming (Liu et al. 2017): train with optimizer.bn_l1 > 0, prune the fraction `amount` of the prunable
  # channels (smallest |γ| over all channel groups) after `prune_epoch`: the model is rebuilt narrower, then fine-tuned.
  # channel_multiple m: each kept width rounded up to a multiple of m (8/16: vector lanes, tensor-core tiles).
  # macs_reduction > 0: instead of `amount`, the global |γ| threshold is bisected so the rebuilt (dense) model has
  # ≤ dense MACs / macs_reduction (the bisection of pruning from scratch; widths rounded up to channel_multiple).
  c.slimming = ml_collections.ConfigDict(dict(enabled=False, amount=0.4, min_channels=1, channel_multiple=1,
                                              macs_reduction=0.0))
  c.slimming.prune_epoch = ml_collections.FieldReference(None, field_type=int)
  # Unstructured masks on a dense run's conv/dense kernels (experiments/run/methods/masking.py) so that (all params) /
  # param_reduction params stay nonzero: kind 'magnitude' (global |w| after prune_epoch, None: the last epoch before
  # fine-tuning, then held at zero) or 'dynamic' (smallest |w| zeroed at every forward pass from the start,
  # straight-through; fixed after prune_epoch). prune_every: steps between dynamic thresholds (only 1 implemented).
  # MACs are unchanged (dense convs); the summary reports params_nonzero.
  c.masks = ml_collections.ConfigDict(dict(enabled=False, kind="magnitude", param_reduction=2.0, prune_every=1))
  c.masks.prune_epoch = ml_collections.FieldReference(None, field_type=int)
  # Uniformly narrower dense model trained from scratch: macs_reduction > 0 sets `widths` by one width factor for
  # every channel group, bisected so the model has ≤ dense MACs / macs_reduction (widths rounded up to
  # channel_multiple, at least 1); 0: off.
  c.narrow = ml_collections.ConfigDict(dict(macs_reduction=0.0, channel_multiple=1))
  # {conv path: output channels} of the model's channel groups (every VGG conv, each ResNet block's conv1);
  # None = the standard widths. Pruning from scratch writes it; slimming changes it in the checkpoint's record.
  c.widths = ml_collections.FieldReference(None, field_type=dict)
  # Pruning from scratch (experiments/pruning_from_scratch.py; jaxsvd.pruning.from_scratch): gates ('bn': every channel
  # group's BN γ, the default; 'block': ResNet block gates) start at `init` and learn on the frozen random init
  # for `search_epochs` with penalty 'budget' ((Σ|γ|/C − ratio)², weight λ) or 'l1'; one global gate threshold is
  # bisected to `budget` × the full MACs (widths rounded up to `channel_multiple`, counted in the search); that
  # architecture is trained from scratch. The budget loss's gradient per γ is
  # 2λ·(mean|γ| − ratio)/C (C = gated channels), so λ of the order of C makes it comparable to the CE gradient.
  c.from_scratch = ml_collections.ConfigDict(dict(
      search_epochs=10, gates="bn", init=0.5, penalty="budget", weight=100.0, ratio=0.5, learning_rate=1e-2,
      budget=0.5, channel_multiple=1))


def _strategy_fields(**overrides) -> dict:
  """Every registered rank strategy's fields and defaults (jaxsvd.pruning.strategies.config_defaults), so a new
  strategy needs no edit here; ``overrides`` set this section's own defaults (e.g. energy)."""
  return {**strategies.config_defaults(), **overrides}
