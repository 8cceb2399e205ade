"""Optimizers with parameter groups, LR schedules, gradient clipping and the BN-γ L1 subgradient.

Groups (labels assigned by structure, see ``param_labels``):
  'uv'        U and V of every SVD layer
  's'         singular values of every SVD layer
  'norm_bias' every other 1-D leaf (BatchNorm scale/bias, biases)
  'other'     everything else (dense kernels, ...)
Each group is an optax chain with its own learning rate, momentum and weight decay, combined
with ``optax.partition``. Config fields (ml_collections.ConfigDict or any mapping):
  optimizer ('sgd'|'adam'|'adamw'), learning_rate, momentum, nesterov, weight_decay,
  schedule ('constant'|'multistep'|'inverse_epoch'|'linear'|'cosine'), milestones (fractions of
  training), milestone_epochs (epochs; when non-empty they replace milestones), decay_factor, warmup_epochs,
  groups ({group: {field: value}} overrides),
  clip ('none'|'norm'|'value'|'adaptive'), clip_value, bn_l1 (network slimming strength).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsvd.core.structure import norm_scales, svd_layers
from jaxsvd.core.tree import leaves_by_path, map_with_path, path_str
from jaxsvd.core.validate import check_choice, check_in_range, check_nonnegative, check_positive

GROUPS = ("uv", "s", "norm_bias", "other")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "inverse_epoch", "linear", "cosine")
CLIPS = ("none", "norm", "value", "adaptive")

DEFAULTS = dict(optimizer="sgd", learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                schedule="constant", milestones=(0.5, 0.75), milestone_epochs=(), decay_factor=0.1, warmup_epochs=0,
                groups={}, clip="none", clip_value=1.0, bn_l1=0.0)


def _get(cfg: Any, name: str, group: str | None = None):
  groups = _field(cfg, "groups")
  if group is not None and groups and group in groups and name in groups[group]:
    return groups[group][name]
  return _field(cfg, name)


def _field(cfg: Any, name: str):
  value = cfg.get(name, None) if isinstance(cfg, Mapping) or hasattr(cfg, "get") else getattr(cfg, name, None)
  return DEFAULTS[name] if value is None else value


def validate(cfg: Any) -> None:
  """Checks an optimizer config before anything is built (errors name the field as ``optimizer.<field>``).

  Args:
    cfg: the optimizer config (a mapping or ConfigDict; missing or None fields take ``DEFAULTS``).

  Returns:
    None.

  Raises:
    ValueError: if the top-level optimizer, schedule or clip is not a known choice, a ``groups`` key is not in
      ``GROUPS``; unless learning_rate is finite and > 0 (a group's ≥ 0: 0 freezes the group), momentum in [0, 1),
      weight_decay, bn_l1 and warmup_epochs finite and ≥ 0, decay_factor and clip_value finite and > 0, and the
      milestones fractions in (0, 1].
  """
  check_choice("optimizer.optimizer", _field(cfg, "optimizer"), OPTIMIZERS)
  check_choice("optimizer.schedule", _field(cfg, "schedule"), SCHEDULES)
  check_choice("optimizer.clip", _field(cfg, "clip"), CLIPS)
  check_positive("optimizer.learning_rate", _field(cfg, "learning_rate"))
  groups = _field(cfg, "groups") or {}
  for group in groups:
    check_choice("optimizer.groups key", group, GROUPS)
  for group in GROUPS:
    where = f"optimizer.groups.{group}." if group in groups else "optimizer."
    check_nonnegative(where + "learning_rate", _get(cfg, "learning_rate", group))
    check_in_range(where + "momentum", _get(cfg, "momentum", group), 0.0, 1.0, low_closed=True, high_closed=False)
    check_nonnegative(where + "weight_decay", _get(cfg, "weight_decay", group))
    check_nonnegative(where + "warmup_epochs", _get(cfg, "warmup_epochs", group))
    check_positive(where + "decay_factor", _get(cfg, "decay_factor", group))
    for f in _get(cfg, "milestones", group):
      check_in_range(where + "milestones", f, 0.0, 1.0, low_closed=False, high_closed=True)
  check_nonnegative("optimizer.bn_l1", _field(cfg, "bn_l1"))
  check_positive("optimizer.clip_value", _field(cfg, "clip_value"))


def param_labels(params) -> Any:
  """A pytree like ``params`` with each leaf's group name ('uv', 's', 'norm_bias', 'other').

  Args:
    params: the params pytree.

  Returns:
    Its structure with string leaves: 'uv' for U and V and 's' for s of each SVD layer (found by structure),
    'norm_bias' for every other 1-D leaf, 'other' for the rest.
  """
  svd_paths = set(svd_layers(params))

  def label(path, leaf):
    parent, _, name = path.rpartition("/")
    if parent in svd_paths and name in ("U", "V"):
      return "uv"
    if parent in svd_paths and name == "s":
      return "s"
    return "norm_bias" if jnp.ndim(leaf) == 1 else "other"

  return map_with_path(label, params)


def make_schedule(cfg: Any, steps_per_epoch: int, num_epochs: int, group: str | None = None) -> optax.Schedule:
  """The learning-rate schedule of one group, as an optax schedule over optimizer steps.

  With T = max(1, steps_per_epoch·num_epochs) and W = warmup_epochs·steps_per_epoch: a linear warmup lr·t / W for
  t < W, then, with t counted from the end of warmup and D = max(1, T − W):
    constant:       lr
    multistep:      lr·decay_factor^k, k = the number of milestones f with t ≥ ⌊f·D⌋, or, when milestone_epochs
                    is non-empty, the number of its epochs m with t ≥ m·steps_per_epoch (the official recipe's
                    "lr × 0.1 at epochs 81 and 122": from the 82nd epoch on, as torch's loop adjusts before epoch 81
                    counted from 0)
    inverse_epoch:  lr / (⌊t / steps_per_epoch⌋ + 1)
    linear:         lr·(1 − t / D), then 0
    cosine:         lr·½(1 + cos(π·t / D)), then 0

  Args:
    cfg: the optimizer config (see module doc); ``groups[group]`` fields override the top-level ones.
    steps_per_epoch: optimizer steps per epoch.
    num_epochs: the number of training epochs.
    group: the parameter group whose overrides apply, or None for the top-level fields only.

  Returns:
    An ``optax.Schedule``: step → learning rate.
  """
  lr = float(_get(cfg, "learning_rate", group))
  kind = _get(cfg, "schedule", group)
  total = max(1, steps_per_epoch * num_epochs)
  warmup = int(_get(cfg, "warmup_epochs", group) * steps_per_epoch)
  main_steps = max(1, total - warmup)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "multistep":
    factor, epochs = float(_get(cfg, "decay_factor", group)), _get(cfg, "milestone_epochs", group)
    steps = [int(m) * steps_per_epoch for m in epochs] if epochs else [
        int(f * main_steps) for f in _get(cfg, "milestones", group)]
    main = optax.piecewise_constant_schedule(lr, {step: factor for step in steps})
  elif kind == "inverse_epoch":
    main = lambda step: lr / (step // steps_per_epoch + 1)
  elif kind == "linear":
    main = optax.linear_schedule(lr, 0.0, main_steps)
  else:
    main = optax.cosine_decay_schedule(lr, main_steps)
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def _group_transform(cfg, group, steps_per_epoch, num_epochs) -> optax.GradientTransformation:
  schedule = make_schedule(cfg, steps_per_epoch, num_epochs, group)
  kind = _get(cfg, "optimizer", group)
  wd = float(_get(cfg, "weight_decay", group))
  if kind == "sgd":
    momentum = float(_get(cfg, "momentum", group)) or None
    return optax.chain(optax.add_decayed_weights(wd), optax.sgd(schedule, momentum, _get(cfg, "nesterov", group)))
  if kind == "adam":
    return optax.chain(optax.add_decayed_weights(wd), optax.adam(schedule))
  return optax.adamw(schedule, weight_decay=wd)


def l1_subgradient(strength: float, masks: Mapping[str, Any]) -> optax.GradientTransformation:
  """g ← g + λ·sign(θ)·m on the masked leaves: the subgradient of λ·‖θ ⊙ m‖₁ (network slimming on BN γ,
  pruning-from-scratch gates). Leaves without a mask are unchanged; masks are checked against params.

  Args:
    strength: λ.
    masks: {leaf path: bool array shaped like the leaf, or a Python bool for the whole leaf}.

  Returns:
    A stateless ``optax.GradientTransformation``. Its ``update`` needs ``params`` and raises ValueError when
    they are missing, when a mask's path is not a leaf, or when an array mask's shape differs from the leaf's.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("l1_subgradient needs params in update()")
    _check_mask_paths(params, masks)

    def add(kp, g, p):
      m = masks.get(path_str(kp))
      if m is None or m is False:
        return g
      return g + strength * jnp.sign(p).astype(g.dtype) * jnp.asarray(m, g.dtype)

    return jax.tree_util.tree_map_with_path(add, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def _check_mask_paths(params, masks) -> None:
  leaves = leaves_by_path(params)
  for path, m in masks.items():
    if path not in leaves:
      raise ValueError(f"mask for {path!r} has no leaf in params")
    if not isinstance(m, (bool, np.bool_)) and np.shape(m) != np.shape(leaves[path]):
      raise ValueError(f"mask for {path!r} has shape {np.shape(m)}, the leaf {np.shape(leaves[path])}")


def clipping(cfg: Any) -> optax.GradientTransformation:
  """The gradient clipping of ``cfg.clip`` with threshold c = ``cfg.clip_value``.

  'norm': g·min(1, c / ‖g‖₂) over the global norm; 'value': each element clipped to [−c, c]; 'adaptive':
  ``optax.adaptive_grad_clip(c)`` (unit-wise, relative to the param norm); 'none': the identity.

  Args:
    cfg: the optimizer config.

  Returns:
    An ``optax.GradientTransformation``.
  """
  kind, value = _field(cfg, "clip"), float(_field(cfg, "clip_value"))
  if kind == "norm":
    return optax.clip_by_global_norm(value)
  if kind == "value":
    return optax.clip(value)
  if kind == "adaptive":
    return optax.adaptive_grad_clip(value)
  return optax.identity()


def make_optimizer(cfg: Any, params, steps_per_epoch: int, num_epochs: int) -> optax.GradientTransformation:
  """clip → (optional BN-γ L1) → per-group optimizer, as one optax transform.

  With ``bn_l1`` = λ > 0, λ·sign(γ) is added to the gradient of every norm layer's scale γ (network slimming).
  Each group ('uv', 's', 'norm_bias', 'other', see ``param_labels``) then gets its own schedule and optimizer:
  'sgd' and 'adam' with coupled weight decay (g + wd·θ), 'adamw' with decoupled weight decay.

  Args:
    cfg: the optimizer config (see module doc).
    params: the params pytree; its norm layers select the γ leaves of the BN-γ L1 term.
    steps_per_epoch: optimizer steps per epoch.
    num_epochs: the number of training epochs.

  Returns:
    An ``optax.GradientTransformation``.

  Raises:
    ValueError: if the config is invalid (see ``validate``).
  """
  validate(cfg)
  groups = {g: _group_transform(cfg, g, steps_per_epoch, num_epochs) for g in GROUPS}
  parts = [clipping(cfg)]
  if _field(cfg, "bn_l1"):
    parts.append(l1_subgradient(float(_field(cfg, "bn_l1")), norm_scales(params)))
  parts.append(optax.partition(groups, param_labels))
  return optax.chain(*parts)


__all__ = ["GROUPS", "OPTIMIZERS", "SCHEDULES", "CLIPS", "DEFAULTS", "validate", "param_labels", "make_schedule",
           "l1_subgradient", "clipping", "make_optimizer"]
