"""Train state and the pure train/eval steps (flax-examples style).

``TrainState`` carries the model's apply fn and the optax transform as static fields, so a
pruned model (new ranks → new apply fn and new param shapes) makes the jitted step retrace
exactly once. ``axis_name`` turns on cross-device averaging (pmap / shard_map). Framework-neutral: ``eval_step``'s
``mode`` is applied by the re-targeting function a loaded framework registered ('mode/<framework>',
``jaxsvd.core.registry``; linen: ``jaxsvd.linen.in_mode``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxsvd.core import registry
from jaxsvd.core.svd import MODES
from jaxsvd.core.validate import check_choice
from jaxsvd.training.losses import RegularizerConfig, cross_entropy_sums, lazy_regularization_grads, make_loss_fn


class TrainState(struct.PyTreeNode):
  """What a train step updates, as a pytree: ``step`` (int32 scalar), ``params``, ``model_state`` (non-param
  collections) and ``opt_state``. ``apply_fn`` and ``tx`` are static fields (not leaves), so a new model (e.g.
  after pruning) or optimizer makes the jitted steps retrace.
  """

  step: jax.Array
  params: Any
  model_state: dict  # non-param collections, e.g. {'batch_stats': ...}
  opt_state: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, apply_fn, variables, tx) -> "TrainState":
    """A state at step 0 with ``tx`` initialized on the params.

    Args:
      apply_fn: the model's apply function.
      variables: the model's variables, {'params': ..., other collections}.
      tx: the optax transform.

    Returns:
      The new ``TrainState``.
    """
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return cls(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
               opt_state=tx.init(params), apply_fn=apply_fn, tx=tx)

  @property
  def variables(self) -> dict:
    """The model's variables: {'params': params, **model_state}."""
    return {"params": self.params, **self.model_state}


def _average(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def train_step(state: TrainState, batch: dict, reg: RegularizerConfig, axis_name: str | None = None):
  """One SGD step. ``reg`` is static (λ = 0 terms are not traced). Returns (state, metrics).

  The update is ``state.tx``'s (any optax transform). With ``reg.every`` = N > 1 the orthogonality and sparsity
  gradients come from ``losses.lazy_regularization_grads`` (N-weighted, every N-th step) and their value is added
  to 'loss'. With ``axis_name``, grads, metrics and model state are ``pmean``-ed over that axis before the update.

  Args:
    state: the current state.
    batch: {'image', 'label'} with an optional float 'mask'.
    reg: the regularization weights (hashable; a static argument under jit).
    axis_name: the device axis to average over, or None.

  Returns:
    (the state after one update, with step + 1; the metrics of ``losses.make_loss_fn`` plus any lazy terms, and
    'finite': 1.0 if the loss and every updated param and model-state value are finite, else 0.0 — one fused
    reduction, so a caller can stop before saving a diverged state without a host sync per step).
  """
  step_reg, lazy_reg = reg.split_lazy()
  loss_fn = make_loss_fn(state.apply_fn, step_reg, train=True)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch)
  if lazy_reg is not None:
    lazy_grads, lazy_metrics = lazy_regularization_grads(state.params, state.step, lazy_reg)
    grads = jax.tree.map(jnp.add, grads, lazy_grads)
    lazy_total = lazy_metrics.pop("reg")
    metrics = {**metrics, **lazy_metrics, "loss": metrics["loss"] + lazy_total}
  grads, metrics, model_state = _average((grads, metrics, model_state), axis_name)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(metrics["loss"]) & all_finite((params, model_state))
  metrics = {**metrics, "finite": finite.astype(jnp.float32)}
  return state.replace(step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state), metrics


def all_finite(tree) -> jax.Array:
  """A bool scalar: no floating-point leaf of ``tree`` holds a NaN or ±Inf (traceable; one reduction per leaf).

  Args:
    tree: any pytree of arrays; leaves that are not floating-point (inexact) are skipped.

  Returns:
    A () bool ``jax.Array``: True if every floating-point leaf is finite (also when there is none).
  """
  flags = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.stack(flags).all() if flags else jnp.array(True)


def apply_in_mode(apply_fn: Callable, mode: str | None) -> Callable:
  """``apply_fn`` of the same model with its SVD layers in ``mode``, by every loaded framework's 'mode/' function.

  Each function registered as 'mode/<framework>' (``jaxsvd.core.registry``; linen: ``jaxsvd.linen.in_mode``)
  returns the apply functions of its own framework's models in ``mode`` and any other function unchanged; a
  framework that is not loaded cannot have built the model, so none is imported.

  Args:
    apply_fn: a model's apply function (e.g. a zoo model's bound ``.apply``).
    mode: one of ``jaxsvd.core.svd.MODES``, or None.

  Returns:
    The apply function in ``mode`` (the same function to float tolerance); ``apply_fn`` itself for ``mode=None``
    and for models no loaded framework re-targets.

  Raises:
    ValueError: if ``mode`` is not None and not one of ``jaxsvd.core.svd.MODES``.
  """
  if mode is None:
    return apply_fn
  check_choice("mode", mode, MODES)
  for name in registry.loaded("mode/"):
    apply_fn = registry.lookup(name)(apply_fn, mode)
  return apply_fn


# The executions eval/inference autotune over (``xla_options.AutotunedJit(variants=...)``): the model's
# own mode (``auto``: fewer MACs per layer) and every SVD layer as one conv (the dense-equivalent).
EVAL_VARIANTS = {"mode": (None, "reconstruct")}


def eval_step(state: TrainState, batch: dict, axis_name: str | None = None, mode: str | None = None) -> dict:
  """Sums (not means) over the batch, so padded/uneven batches average exactly: mask = 1 marks real rows.

  ``mode`` runs a zoo model's SVD layers in that execution mode (``apply_in_mode``: ``jaxsvd.linen.in_mode`` for a
  linen model; same result).

  Args:
    state: the state whose variables are evaluated (train=False).
    batch: {'image', 'label'} with an optional float 'mask'.
    axis_name: the device axis to ``psum`` the sums over, or None.
    mode: 'reconstruct', 'factored' or 'auto', or None for the model's own mode.

  Returns:
    {'loss_sum', 'correct', 'count'} (see ``losses.cross_entropy_sums``).
  """
  logits = apply_in_mode(state.apply_fn, mode)(state.variables, batch["image"], train=False)
  sums = cross_entropy_sums(logits, batch["label"], batch.get("mask"))
  return sums if axis_name is None else jax.lax.psum(sums, axis_name)


__all__ = ["TrainState", "train_step", "all_finite", "apply_in_mode", "EVAL_VARIANTS", "eval_step"]
