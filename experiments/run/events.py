"""Pruning events: everything that changes a run's architecture, as small classes the loop only iterates.

An ``Event`` is built from the config (``from_config``: zero or more events), says when it is due, and applies
itself to the host train state:

    outcome = event.apply(state, architecture, ctx)   # Outcome(state, architecture, entry)

``architecture`` is the run's ``jaxsvd.core.record.Architecture``; the new one goes into the next checkpoint, so
resume and restore need no method-specific code. ``entry`` is a JSON log record (kept in the checkpoint's run
metadata). An event type may also shape the optimizer for every architecture it has produced and add to the
end-of-run summary (classmethods ``optimizer`` and ``summary``: they read only the record, so a resumed run
rebuilds the same optax chain whatever the current config enables).

A new pruning method is one new ``Event`` subclass appended to ``methods.EVENT_TYPES``; ``train.py`` does not change.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.report import metrics as reporting
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import iter_svd_layers, norm_widths, ranks, total_rank, unboxed
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.core.validate import check_choice, check_in_range, check_min_int
from jaxsvd.linen import flops
from jaxsvd.pruning import Floors, Phases, Schedule, Strategy, budget, channels, from_scratch, rank, slimming
from jaxsvd.pruning import masks as masks_lib
from jaxsvd.pruning.budget import MacsCounter
from jaxsvd.pruning.opt_state import OPT_STATE_POLICIES, update_state
from jaxsvd.training import distributed


@dataclasses.dataclass(frozen=True)
class Context:
  """What events need from the run: a model and an optimizer for any architecture record."""
  build_model: Callable[[Architecture], Any]  # the linen model (with the run's BN axis)
  make_tx: Callable[[Architecture, Any], optax.GradientTransformation]  # (architecture, params) -> optimizer
  epoch: int | None = None  # the epoch just completed (the loop sets it before applying events)
  workdir: str | None = None  # where rank prunes record the spectra they cut (reporting.spectra_path); None: nowhere


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What ``Event.apply`` returns: the host train state and architecture after the event, a JSON log entry
  (the loop adds the epoch) and a one-line log message.
  """
  state: Any  # the host TrainState after the event
  architecture: Architecture
  entry: dict  # JSON log record: {'kind', ...} (the loop adds 'epoch')
  message: str  # one line for the log


class Event(abc.ABC):
  """One pruning method's hook into the epoch loop."""
  kind: ClassVar[str]

  @property
  def name(self) -> str:
    """How the log names the event ('online prune', 'slimming', ...)."""
    return self.kind

  @classmethod
  @abc.abstractmethod
  def from_config(cls, c, phases: Phases) -> list[Event]:
    """The events of this type that config ``c`` asks for (validated, one-line errors naming the field).

    Args:
      c: the experiment config.
      phases: the run's training and fine-tune phases.

    Returns:
      The events, none when the method is off.

    Raises:
      ValueError: one line naming a bad field.
    """

  @abc.abstractmethod
  def due(self, epoch: int) -> bool:
    """Whether the event fires after completing ``epoch`` (1-based).

    Args:
      epoch: the epoch just completed.

    Returns:
      Whether it fires now.
    """

  @abc.abstractmethod
  def apply(self, state, architecture: Architecture, ctx: Context) -> Outcome:
    """The state and architecture after the event (pure on the host state; the loop re-places it).

    Args:
      state: the host train state.
      architecture: the run's current architecture record.
      ctx: builds models and optimizers for an architecture.

    Returns:
      The ``Outcome``.
    """

  @classmethod
  def optimizer(cls, architecture: Architecture, params, opt_cfg: dict) -> tuple[dict, list]:
    """(optimizer config, extra optax transforms chained after it) for ``architecture``; default unchanged.

    Called for every type in ``methods.EVENT_TYPES`` (not only configured ones): it must depend on the record alone.

    Args:
      architecture: the architecture record the optimizer is built for.
      params: its params.
      opt_cfg: the optimizer config, as the events before this one left it.

    Returns:
      (optimizer config, list of extra transforms); the default returns (``opt_cfg``, []).
    """
    del architecture, params
    return opt_cfg, []

  @classmethod
  def summary(cls, architecture: Architecture, params) -> dict:
    """Fields this event adds to the end-of-run summary.

    Args:
      architecture: the final architecture record.
      params: the final params.

    Returns:
      {field: value}; none by default.
    """
    del architecture, params
    return {}


@dataclasses.dataclass(frozen=True)
class RankPrune(Event):
  """SVD rank pruning (online every k epochs, or the final prune before fine-tuning): ``pruning.rank.prune``."""
  kind: ClassVar[str] = "rank"
  label: str  # 'online' | 'final'
  strategy: Strategy
  floors: Floors
  opt_state: str  # 'reinit' | 'slice'
  schedule: Schedule
  last_epoch: int  # no pruning after this epoch (fine-tuning)
  budget_ramp: str = "none"  # 'budget' only: how the MACs target is approached over the schedule's events

  @property
  def name(self) -> str:
    """'online prune' or 'final prune'."""
    return f"{self.label} prune"

  @classmethod
  def from_config(cls, c, phases: Phases) -> list[Event]:
    """An 'online' (``c.pruning``) and a 'final' (``c.final_prune``) event, each if enabled; none if ``c.svd`` is off.

    Raises:
      ValueError: one line naming a bad field, or ``pruning.start`` after the last epoch that may prune.
    """
    if not c.svd.enabled:
      return []
    events: list[Event] = []
    if c.pruning.enabled:
      schedule = Schedule.from_config(c.pruning, "pruning")
      if schedule.start > schedule.last(phases.last_train_epoch):
        raise ValueError(f"pruning.start={schedule.start} is after the last epoch that may prune "
                         f"({schedule.last(phases.last_train_epoch)})")
      events.append(cls.for_section(c.pruning, "pruning", "online", schedule, phases))
    if c.final_prune.enabled:
      once = Schedule.once(phases.last_train_epoch)
      events.append(cls.for_section(c.final_prune, "final_prune", "final", once, phases))
    return events

  @classmethod
  def for_section(cls, section, name: str, label: str, schedule: Schedule, phases: Phases) -> RankPrune:
    """The rank-pruning event of one config section.

    Args:
      section: the config section (strategy, floors and ``opt_state`` fields).
      name: the section's name, put in errors.
      label: 'online' or 'final'.
      schedule: when it prunes.
      phases: the run's phases (no pruning after ``phases.last_train_epoch``).

    Returns:
      The ``RankPrune``.

    Raises:
      ValueError: one line naming a bad field of the section.
    """
    check_choice(f"{name}.opt_state", section.opt_state, OPT_STATE_POLICIES)
    ramp = section.get("budget_ramp", "none")
    check_choice(f"{name}.budget_ramp", ramp, budget.RAMPS)
    strategy = Strategy.from_config(section, name)
    if ramp != "none" and strategy.name != "budget":
      raise ValueError(f"{name}.budget_ramp={ramp!r} needs {name}.strategy='budget', got {strategy.name!r}")
    return cls(label, strategy, Floors.from_config(section, name), section.opt_state, schedule,
               phases.last_train_epoch, ramp)

  def strategy_at(self, epoch: int | None) -> Strategy:
    """The strategy for the event after ``epoch``: for 'budget', the MACs reduction of ``budget_ramp`` at this
    event's position in the schedule (``budget.ramped_reduction``); otherwise ``strategy``.

    Raises:
      ValueError: under a ramp, if ``epoch`` is None or the event is not due after it (the ramp's position would
        be a guess).
    """
    if self.strategy.name != "budget" or self.budget_ramp == "none":
      return self.strategy
    if epoch is None or not self.due(epoch):
      raise ValueError(f"{self.name}: budget_ramp={self.budget_ramp!r} needs the epoch the event is due after "
                       f"(Context.epoch), got {epoch!r}")
    events = self.schedule.count(self.last_epoch)
    reduction = budget.ramped_reduction(self.strategy.macs_reduction, self.schedule.index(epoch), events,
                                        self.budget_ramp)
    return dataclasses.replace(self.strategy, macs_reduction=reduction)

  def due(self, epoch: int) -> bool:
    """Due when ``schedule`` is, up to ``last_epoch``."""
    return self.schedule.due(epoch, self.last_epoch)

  def apply(self, state, architecture: Architecture, ctx: Context) -> Outcome:
    """Prunes ranks (``rank.prune``); on a change, rebuilds the model and updates the state per ``opt_state``."""
    macs = MacsCounter.for_architecture(architecture, ranks(state.params)) if self.strategy.name == "budget" else None
    strategy = self.strategy_at(ctx.epoch)
    new_params, new_ranks, report = rank.prune(state.params, strategy, self.floors, architecture.original_ranks, macs)
    if ctx.workdir is not None and ctx.epoch is not None and distributed.is_primary():
      reporting.save_spectra(reporting.spectra_path(ctx.workdir, ctx.epoch, self.label), sorted_spectra(state.params),
                             new_ranks, f"{self.name} after epoch {ctx.epoch}, {describe(strategy)}")
    if report.changed:
      architecture = architecture.replace(ranks=new_ranks)
      model = ctx.build_model(architecture)
      state = update_state(state, new_params, model.apply, report, self.opt_state)
    entry = {"kind": self.label, "total_rank": total_rank(new_ranks), "ranks": dict(new_ranks)}
    if macs is not None:
      entry["macs_reduction"] = macs.dense / macs.at_ranks(new_ranks)
    return Outcome(state, architecture, entry, report.summary())


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


def describe(strategy: Strategy) -> str:
  """A rank-pruning strategy and its parameter, e.g. 'energy=0.05' or 'ratio (reduce_by=0.25)' (a plot's title).

  Args:
    strategy: the strategy.

  Returns:
    The name and the field its rule reads.
  """
  param = {"energy": "energy", "threshold": "threshold", "ratio": "reduce_by", "count": "prune_by",
           "budget": "macs_reduction"}.get(strategy.name)
  if param is None:
    return strategy.name
  value = f"{param}={getattr(strategy, param):g}"
  return value if param == strategy.name else f"{strategy.name} ({value})"


def sorted_spectra(params) -> dict[str, np.ndarray]:
  """{SVD layer path: |s| sorted descending along the last axis} of host ``params``.

  Args:
    params: host params.

  Returns:
    The sorted |s| per layer (float32; a stacked layer keeps its leading axes).
  """
  return {path: -np.sort(-np.abs(np.asarray(unboxed(node["s"]), np.float32)), axis=-1)
          for path, node in iter_svd_layers(params)}
