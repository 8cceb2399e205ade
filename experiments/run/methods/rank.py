"""SVD rank pruning as a run event (``pruning.rank.prune``): online every k epochs (the config's ``pruning``) and the
final prune before fine-tuning (``final_prune``). Each prune records the spectra it cut in the workdir
(``report.spectra``) for the spectra figure.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from experiments.report import spectra as reporting  # the name RankPrune.apply writes its spectra with
from experiments.run import events
from experiments.run.events import Context, Event, Outcome
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import iter_svd_layers, ranks, total_rank, unboxed
from jaxsvd.core.validate import check_choice
from jaxsvd.pruning import Floors, Phases, Schedule, Strategy, budget, rank, strategies
from jaxsvd.pruning.budget import MacsCounter
from jaxsvd.pruning.opt_state import OPT_STATE_POLICIES, update_state
from jaxsvd.training import distributed


@events.register(order=10)
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
    if ramp != "none" and not strategy.can_ramp:
      ramping = " or ".join(repr(n) for n in strategies.names() if strategies.resolve(n).can_ramp)
      raise ValueError(f"{name}.budget_ramp={ramp!r} needs {name}.strategy={ramping}, got {strategy.name!r}")
    return cls(label, strategy, Floors.from_config(section, name), section.opt_state, schedule,
               phases.last_train_epoch, ramp)

  def strategy_at(self, epoch: int | None) -> Strategy:
    """The strategy for the event after ``epoch``: for one that ramps ('budget'), its target under ``budget_ramp``
    at this event's position in the schedule (``Strategy.ramped``); otherwise ``strategy``.

    Raises:
      ValueError: under a ramp, if ``epoch`` is None or the event is not due after it (the ramp's position would
        be a guess).
    """
    if not self.strategy.can_ramp or self.budget_ramp == "none":
      return self.strategy
    if epoch is None or not self.due(epoch):
      raise ValueError(f"{self.name}: budget_ramp={self.budget_ramp!r} needs the epoch the event is due after "
                       f"(Context.epoch), got {epoch!r}")
    return self.strategy.ramped(self.schedule.index(epoch), self.schedule.count(self.last_epoch), self.budget_ramp)

  def due(self, epoch: int) -> bool:
    """Due when ``schedule`` is, up to ``last_epoch``."""
    return self.schedule.due(epoch, self.last_epoch)

  def apply(self, state, architecture: Architecture, ctx: Context) -> Outcome:
    """Prunes ranks (``rank.prune``); on a change, rebuilds the model and updates the state per ``opt_state``."""
    counter = ctx.macs or MacsCounter.for_architecture
    macs = counter(architecture, ranks(state.params)) if self.strategy.needs_macs else None
    strategy = self.strategy_at(ctx.epoch)
    new_params, new_ranks, report = rank.prune(state.params, strategy, self.floors, architecture.original_ranks, macs)
    if ctx.workdir is not None and ctx.epoch is not None and distributed.is_primary():
      reporting.save_spectra(reporting.spectra_path(ctx.workdir, ctx.epoch, self.label), sorted_spectra(state.params),
                             new_ranks, f"{self.name} after epoch {ctx.epoch}, {strategy.describe()}")
    if report.changed:
      architecture = architecture.replace(ranks=new_ranks)
      model = ctx.build_model(architecture)
      state = update_state(state, new_params, model.apply, report, self.opt_state)
    entry = {"kind": self.label, "total_rank": total_rank(new_ranks), "ranks": dict(new_ranks)}
    if macs is not None:
      entry["macs_reduction"] = macs.dense / macs.at_ranks(new_ranks)
    return Outcome(state, architecture, entry, report.summary())


def sorted_spectra(params) -> dict[str, np.ndarray]:
  """{SVD layer path: |s| sorted descending along the last axis} of host ``params``.

  Args:
    params: host params.

  Returns:
    The sorted |s| per layer (float32; a stacked layer keeps its leading axes).
  """
  return {path: -np.sort(-np.abs(np.asarray(unboxed(node["s"]), np.float32)), axis=-1)
          for path, node in iter_svd_layers(params)}


__all__ = ["RankPrune", "sorted_spectra"]
