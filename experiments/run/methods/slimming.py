"""Network slimming as a run event (Liu et al. 2017): the channels of smallest |γ| dropped physically after
``slimming.prune_epoch``, the model rebuilt narrower (``pruning.slimming``, ``pruning.channels``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from experiments.run import events
from experiments.run.events import Context, Event, Outcome
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import norm_widths, ranks, total_rank
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.core.validate import check_in_range, check_min_int
from jaxsvd.linen import flops
from jaxsvd.pruning import Phases, Schedule, channels, from_scratch, slimming
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
    """Picks the channels by |γ|, slices every variable carrying them, records the new widths, fresh optimizer."""
    groups = ctx.build_model(architecture).channel_groups()
    if self.macs_reduction:
      masks = self.budget_masks(state.params, groups, architecture)
    else:
      masks = slimming.channel_masks(state.params, self.amount, self.min_channels, norms=[g.norm for g in groups],
                                     multiple=self.channel_multiple)
    keep = {g.conv: np.flatnonzero(np.asarray(masks[f"{g.norm}/scale"])) for g in groups}
    dense = checkpoint.abstract_variables(architecture.dense().build_model(), architecture.input_shape)
    shapes = channels.kernel_shapes(dense["params"])
    decomposition = architecture.svd.decomposition if architecture.svd else "channel"
    sigma = architecture.svd.sigma if architecture.svd else "signed"
    variables = channels.slice_channels(state.variables, groups, keep, shapes, decomposition, sigma)
    params = jax.tree.map(jnp.asarray, variables.pop("params"))
    architecture = architecture.replace(
        widths={**(architecture.widths or {}), **{conv: len(idx) for conv, idx in keep.items()}},
        pruned_channels={**(architecture.pruned_channels or {}), **slimming.pruned_channels(masks)},
        masked_channels=None, ranks=ranks(params))  # masked (format-1) channels are gone with the rebuild
    tx = ctx.make_tx(architecture, params)
    state = state.replace(params=params, model_state=jax.tree.map(jnp.asarray, variables), tx=tx,
                          opt_state=tx.init(params), apply_fn=ctx.build_model(architecture).apply)
    counts = slimming.summary(masks)
    message = f"{counts['channels_after']} of {counts['channels_before']} prunable channels kept (rebuilt narrower)"
    entry = {"kind": self.kind, **counts, "widths": dict(architecture.widths),
             "pruned_channels": slimming.pruned_channels(masks)}
    if architecture.ranks:  # SVD layers: their ranks after the rebuild (the layer-ranks plot)
      entry.update(total_rank=total_rank(architecture.ranks), ranks=dict(architecture.ranks))
    return Outcome(state, architecture, entry, message)

  def budget_masks(self, params, groups, architecture: Architecture) -> masks_lib.Masks:
    """Slimming masks keeping, per group, its largest |γ| above one global threshold bisected so the rebuilt model
    has ≤ dense MACs / ``macs_reduction`` (``from_scratch.widths_for_budget``; widths rounded up to
    ``channel_multiple``)."""
    layers = leaves_by_path(params)
    gammas = {g.conv: np.abs(np.asarray(layers[f"{g.norm}/scale"], np.float64)) for g in groups}
    macs_of = lambda widths: flops.count(architecture.replace(  # noqa: E731
        widths={**(architecture.widths or {}), **widths}).build_model(), architecture.input_shape).macs
    dense = flops.count(architecture.dense().replace(widths=None).build_model(), architecture.input_shape).macs
    now = macs_of({conv: g.size for conv, g in gammas.items()})
    try:
      widths = from_scratch.widths_for_budget(gammas, macs_of, min(1.0, dense / self.macs_reduction / now),
                                              self.channel_multiple)
    except ValueError:
      raise ValueError(f"slimming.macs_reduction={self.macs_reduction}: even one channel per group needs more "
                       f"MACs") from None
    masks = {}
    for g in groups:
      keep = np.zeros(gammas[g.conv].size, bool)
      keep[np.argsort(-gammas[g.conv], kind="stable")[:widths[g.conv]]] = True
      masks[f"{g.norm}/scale"] = masks[f"{g.norm}/bias"] = jnp.asarray(keep)
    return masks

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
    """Norm-layer channels (all layers) before and after slimming; empty until it has fired."""
    now = sum(norm_widths(params).values())
    if architecture.masked_channels is not None:
      return {"bn_channels_before": now, "bn_channels_after": now - _count(architecture.masked_channels)}
    if architecture.pruned_channels is not None:
      return {"bn_channels_before": now + _count(architecture.pruned_channels), "bn_channels_after": now}
    return {}


def _count(channels: dict) -> int:
  return sum(len(v) for v in channels.values())


__all__ = ["Slimming"]
