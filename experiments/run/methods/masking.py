"""Unstructured masks at a parameter count (the config's ``masks`` section): magnitude pruning and dynamic pruning.

A run with ``masks.enabled`` is dense; its conv and dense kernels lose k = P − round(P / ``param_reduction``)
entries, P = every entry of the params, so the model keeps exactly round(P / param_reduction) nonzero params
(``jaxsvd.pruning.unstructured``, where the method lives; this module reads the config and calls it).

  'magnitude'  after epoch ``prune_epoch`` (None: the last epoch before fine-tuning) the mask is fixed:
               ``unstructured.prune_to_count`` (k smallest |w| over all kernels made exact zeros, held there by
               ``masks.keep_pruned`` last in the optax chain).
  'dynamic'    from the first step the forward pass sees the kernels with their k smallest |w| zeroed, the threshold
               recomputed each step inside jit with straight-through gradients (``unstructured.dynamic_apply``);
               after ``prune_epoch`` the mask is fixed as for 'magnitude' (the fine-tune epochs train a fixed mask).

The record's ``masks`` ({kernel path: kept entries}) says a mask is fixed; the bool masks are the ``keep_pruned``
optimizer state, saved in every checkpoint, so a resume keeps them. MACs are not reduced (an unstructured mask skips
no multiply-add in a dense conv): the summary reports ``params_nonzero`` beside the unchanged ``macs_after``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from experiments.run import events
from experiments.run.events import Context, Event, Outcome
from jaxsvd.core.record import Architecture
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.core.validate import check_choice, check_min_int
from jaxsvd.pruning import Phases, unstructured
from jaxsvd.pruning import masks as masks_lib
from jaxsvd.pruning.dynamic import MaskedApply

KINDS = ("magnitude", "dynamic")


def forward(c, architecture: Architecture, model, params) -> Any:
  """The run's apply function: ``model.apply``, or during dynamic pruning (before the mask is fixed) the same with
  the kernels' smallest |w| zeroed at every call. Checks the parameter count of a masks run (before any compile).

  Args:
    c: the experiment config (its ``masks`` section).
    architecture: the run's record (``masks`` set: the mask is fixed).
    model: the linen model.
    params: its params (only shapes are used).

  Returns:
    ``model.apply`` or ``unstructured.dynamic_apply``'s ``MaskedApply`` (the N − k largest |w| of the kernels).

  Raises:
    ValueError: one line naming ``masks.param_reduction`` if it cannot be reached.
  """
  m = c.get("masks")
  if m is None or not m.enabled:
    return model.apply
  unstructured.pruned_count(params, m.param_reduction)  # the count's check, for magnitude runs too
  if m.kind != "dynamic" or architecture.masks is not None:
    return model.apply
  return unstructured.dynamic_apply(model.apply, params, m.param_reduction)


@events.register(order=30)
@dataclasses.dataclass(frozen=True)
class MaskPrune(Event):
  """The fixed mask of a masks run: k smallest |w| over all kernels zeroed after ``epoch`` and held at zero."""
  kind: ClassVar[str] = "masks"
  epoch: int
  method: str  # 'magnitude' | 'dynamic'
  param_reduction: float

  @classmethod
  def from_config(cls, c, phases: Phases) -> list[Event]:
    """One event after ``masks.prune_epoch`` (None: ``phases.last_train_epoch``) if ``c.masks`` is enabled.

    Raises:
      ValueError: one line naming a bad ``masks`` field, or a run that is not dense or also slims.
    """
    m = c.get("masks")
    if m is None or not m.enabled:
      return []
    check_choice("masks.kind", m.kind, KINDS)
    if isinstance(m.param_reduction, bool) or not isinstance(m.param_reduction, (int, float)) \
        or not m.param_reduction >= 1.0:
      raise ValueError(f"masks.param_reduction must be a number ≥ 1, got {m.param_reduction!r}")
    check_min_int("masks.prune_every", m.prune_every, 1)
    if m.prune_every != 1:
      raise ValueError(f"masks.prune_every={m.prune_every}: only 1 (a new threshold at every step) is implemented")
    epoch = phases.last_train_epoch if m.prune_epoch is None else m.prune_epoch
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= phases.num_epochs:
      raise ValueError(f"masks.prune_epoch must be None or an int in [1, num_epochs={phases.num_epochs}], "
                       f"got {m.prune_epoch!r}")
    if c.svd.enabled or c.slimming.enabled:
      raise ValueError("masks.enabled prunes a dense model's kernels: set svd.enabled=False and slimming.enabled=False")
    return [cls(epoch, m.kind, float(m.param_reduction))]

  def due(self, epoch: int) -> bool:
    """Due only after epoch ``self.epoch``."""
    return epoch == self.epoch

  def apply(self, state, architecture: Architecture, ctx: Context) -> Outcome:
    """Global magnitude masks at the count, made permanent (``unstructured.prune_to_count``); ``keep_pruned``
    appended to the optimizer (its base state, moments and schedule position kept); the plain apply function."""
    params, opt_state, architecture, report = unstructured.prune_to_count(
        state.params, state.opt_state, architecture, self.param_reduction)
    state = state.replace(params=params, tx=ctx.make_tx(architecture, params), opt_state=opt_state,
                          apply_fn=ctx.build_model(architecture).apply)
    message = (f"{self.method} masks: {report['pruned']} of {report['kernel_entries']} kernel entries pruned, "
               f"the mask is now fixed")
    return Outcome(state, architecture, {"kind": self.kind, "method": self.method, **report}, message)

  @classmethod
  def forward(cls, c, architecture: Architecture, model, params, apply_fn):
    """During dynamic pruning the masked apply function (the module's ``forward``, which also checks the parameter
    count of a masks run); otherwise ``apply_fn``."""
    masked = forward(c, architecture, model, params)
    return masked if isinstance(masked, MaskedApply) else apply_fn

  @classmethod
  def optimizer(cls, architecture: Architecture, params, opt_cfg: dict) -> tuple[dict, list]:
    """With a fixed mask (``architecture.masks``): ``keep_pruned`` over those leaves, its masks = params ≠ 0 (a
    resume replaces them with the checkpoint's)."""
    masks = unstructured.recorded_masks(params, architecture)
    return opt_cfg, [] if masks is None else [masks_lib.keep_pruned(masks)]

  @classmethod
  def summary(cls, architecture: Architecture, params) -> dict:
    """``params_total``, ``params_nonzero`` and ``masked_params_kept`` once the mask is fixed
    (``unstructured.counts``)."""
    return unstructured.counts(params, architecture)

  def row(self, architecture: Architecture, params) -> dict:
    """``params_nonzero``: the params the forward pass uses after the epoch's events: all before the mask (P − k
    during dynamic pruning, whose forward zeroes k), then the fixed mask's count."""
    fixed = unstructured.counts(params, architecture)
    if fixed:
      return {"params_nonzero": fixed["params_nonzero"]}
    total = sum(int(np.size(w)) for w in leaves_by_path(params).values())
    pruned = unstructured.pruned_count(params, self.param_reduction)[0] if self.method == "dynamic" else 0
    return {"params_nonzero": total - pruned}


__all__ = ["KINDS", "forward", "MaskPrune"]
