"""Network slimming as a run event (Liu et al. 2017): the channels of smallest |γ| dropped physically after
``slimming.prune_epoch``, the model rebuilt narrower (``pruning.slimming``, ``pruning.channels``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from experiments.run import events
from experiments.run.events import Context, Event, Outcome
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import norm_widths
from jaxsvd.core.validate import check_in_range, check_min_int
from jaxsvd.linen import flops
from jaxsvd.pruning import Phases, Schedule, slimming
from jaxsvd.pruning import masks as masks_lib


@events.register(order=20)
@dataclasses.dataclass(frozen=True)
class Slimming(Event):
  """Network slimming (Liu et al. 2017): drop the channels of smallest |γ| (one global threshold over the model's
  channel groups) *physically*: the model is rebuilt narrower with the kept weights copied
  (``pruning.channels.slice_channels``; the same function as the masked model), then fine-tuned with a fresh
  optimizer without the γ-L1 term, as the paper does. A ResNet's residual stream is not pruned (see
  ``ResNet.channel_groups``)."""
  kind: ClassVar[str] = "slimming"
  epoch: int
  amount: float
  min_channels: int
  channel_multiple: int = 1
  macs_reduction: float = 0.0  # > 0: the |γ| threshold bisected to ≤ dense MACs / macs_reduction (``amount`` unused)

  @classmethod
  def from_config(cls, c, phases: Phases) -> list[Event]:
    """One event after ``slimming.prune_epoch`` if ``c.slimming`` is enabled.

    Raises:
      ValueError: if ``amount`` is not in [0, 1), ``min_channels`` or ``channel_multiple`` is not an int ≥ 1, or
        ``prune_epoch`` is not an int in [1, num_epochs).
    """
    s = c.slimming
    if not s.enabled:
      return []
    check_in_range("slimming.amount", s.amount, 0.0, 1.0, low_closed=True, high_closed=False)
    check_min_int("slimming.min_channels", s.min_channels, 1)
    check_min_int("slimming.channel_multiple", s.get("channel_multiple", 1), 1)
    reduction = s.get("macs_reduction", 0.0)
    if isinstance(reduction, bool) or not isinstance(reduction, (int, float)) or not (reduction == 0 or reduction >= 1):
      raise ValueError(f"slimming.macs_reduction must be 0 (use amount) or a number ≥ 1, got {reduction!r}")
    if reduction and c.svd.enabled:
      raise ValueError("slimming.macs_reduction counts a dense model's MACs: set svd.enabled=False")
    if not isinstance(s.prune_epoch, int) or not 1 <= s.prune_epoch < phases.num_epochs:
      raise ValueError(f"slimming.prune_epoch must be an int in [1, num_epochs={phases.num_epochs}), "
                       f"got {s.prune_epoch!r}")
    return [cls(s.prune_epoch, s.amount, s.min_channels, s.get("channel_multiple", 1), float(reduction))]

  def due(self, epoch: int) -> bool:
    """Due only after epoch ``self.epoch`` (``slimming.prune_epoch``)."""
    return Schedule.once(self.epoch).due(epoch, self.epoch)

  def apply(self, state, architecture: Architecture, ctx: Context) -> Outcome:
    """Picks the channels by |γ| (``slimming.group_masks``, or ``slimming.budget_masks`` under a MACs budget), slices
    every variable carrying them and records the new widths (``slimming.slim``), fresh optimizer."""
    if self.macs_reduction:
      masks = slimming.budget_masks(state.params, architecture, _macs, self.macs_reduction, self.channel_multiple)
    else:
      masks = slimming.group_masks(state.params, architecture, self.amount, self.min_channels, self.channel_multiple)
    variables, architecture, report = slimming.slim(state.variables, architecture, masks)
    params = variables.pop("params")
    tx = ctx.make_tx(architecture, params)
    state = state.replace(params=params, model_state=variables, tx=tx, opt_state=tx.init(params),
                          apply_fn=ctx.build_model(architecture).apply)
    message = f"{report['channels_after']} of {report['channels_before']} prunable channels kept (rebuilt narrower)"
    return Outcome(state, architecture, {"kind": self.kind, **report}, message)

  @classmethod
  def optimizer(cls, architecture: Architecture, params, opt_cfg: dict) -> tuple[dict, list]:
    """After slimming: ``bn_l1`` = 0; for a format-1 record (channels masked, not removed) also a transform that
    holds them at zero. Before slimming: unchanged."""
    if architecture.masked_channels is not None:
      masks = slimming.masks_from_channels(params, architecture.masked_channels)
      return {**opt_cfg, "bn_l1": 0.0}, [masks_lib.keep_pruned(masks)]
    if architecture.pruned_channels is not None:
      return {**opt_cfg, "bn_l1": 0.0}, []
    return opt_cfg, []

  @classmethod
  def summary(cls, architecture: Architecture, params) -> dict:
    """Norm-layer channels (all layers) before and after slimming; empty until it has fired
    (``slimming.channel_counts``)."""
    return slimming.channel_counts(architecture, params)

  def row(self, architecture: Architecture, params) -> dict:
    """``bn_channels``: the norm-layer channels (all layers) the model has after the epoch's events."""
    counts = slimming.channel_counts(architecture, params)
    return {"bn_channels": counts.get("bn_channels_after", sum(norm_widths(params).values()))}


def _macs(architecture: Architecture) -> int:
  """MACs of the record's linen model (the cost ``slimming.budget_masks`` bisects on)."""
  return flops.count(architecture.build_model(), architecture.input_shape).macs


__all__ = ["Slimming"]
