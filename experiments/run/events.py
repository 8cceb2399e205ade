"""Pruning events: everything that changes a run's architecture, as small classes the loop only iterates, and the
registry of their types.

An ``Event`` is built from the config (``from_config``: zero or more events), says when it is due, and applies
itself to the host train state:

    outcome = event.apply(state, architecture, ctx)   # Outcome(state, architecture, entry)

``architecture`` is the run's ``jaxsvd.core.record.Architecture``; the new one goes into the next checkpoint, so
resume and restore need no method-specific code. ``entry`` is a JSON log record (kept in the checkpoint's run
metadata). An event type may also set the architecture a fresh run starts from (``initial``), wrap the apply
function the run trains with (``forward``), shape the optimizer for every architecture it has produced and add to the
end-of-run summary (classmethods ``optimizer`` and ``summary``: they read only the record, so a resumed run
rebuilds the same optax chain whatever the current config enables).

Event types are registered by name (their ``kind``) with ``@register(order=...)``. They live in the modules of
``METHODS`` (``experiments/run/methods/``), which ``types()`` imports by name, every module it finds there: a new
pruning method is one new module there holding one registered ``Event`` subclass, and neither the loop, the plan, the
optimizer nor the summary changes (they iterate ``types()``). An ``Event`` subclass of such a module that is not
registered is an error, not a silently missing method.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any, ClassVar

import optax

from jaxsvd.core.record import Architecture
from jaxsvd.pruning import Phases

METHODS = "experiments.run.methods"  # the package of the event types (imported module by module, by name)
# kind -> (order, event type): filled by ``register`` as the modules of ``METHODS`` are imported
REGISTRY: dict[str, tuple[int, type]] = {}


@dataclasses.dataclass(frozen=True)
class Context:
  """What events need from the run: a model and an optimizer for any architecture record."""
  build_model: Callable[[Architecture], Any]  # the linen model (with the run's BN axis)
  make_tx: Callable[[Architecture, Any], optax.GradientTransformation]  # (architecture, params) -> optimizer
  epoch: int | None = None  # the epoch just completed (the loop sets it before applying events)
  workdir: str | None = None  # where rank prunes record the spectra they cut (report.spectra); None: nowhere
  macs: Callable[[Architecture, Any], Any] | None = None  # (record, SVD layer paths) -> its budget.MacsCounter;
  #   None: MacsCounter.for_architecture (zoo records)


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
  def initial(cls, c, architecture: Architecture) -> Architecture:
    """The architecture a fresh run starts from, as this method sets it (e.g. narrower widths); default unchanged.

    Called for every registered type (not only configured ones) when a run starts from a random init.

    Args:
      c: the experiment config.
      architecture: the initial record, as the task and the types before this one made it.

    Returns:
      The record; the default returns ``architecture``.
    """
    del c
    return architecture

  @classmethod
  def forward(cls, c, architecture: Architecture, model, params, apply_fn: Callable) -> Callable:
    """The apply function the run trains with (e.g. masked weights); default unchanged.

    Called for every registered type whenever the run builds its train state (start, resume).

    Args:
      c: the experiment config.
      architecture: the run's record.
      model: its linen model.
      params: its params (shapes; a type may check them).
      apply_fn: the apply function as the types before this one left it (first ``model.apply``).

    Returns:
      The apply function; the default returns ``apply_fn``.
    """
    del c, architecture, model, params
    return apply_fn

  @classmethod
  def optimizer(cls, architecture: Architecture, params, opt_cfg: dict) -> tuple[dict, list]:
    """(optimizer config, extra optax transforms chained after it) for ``architecture``; default unchanged.

    Called for every registered type (not only configured ones): it must depend on the record alone.

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

  def row(self, architecture: Architecture, params) -> dict:
    """Fields this configured event adds to every epoch's metrics row, read after the epoch's events (what the
    method changes: the channels slimming leaves, the nonzero params of masks); none by default.

    Args:
      architecture: the run's record after the epoch's events.
      params: its params (shapes are enough for the built-in types; device arrays are not fetched).

    Returns:
      {column: number}, the same columns at every epoch.
    """
    del architecture, params
    return {}


def register(order: int) -> Callable[[type], type]:
  """The class decorator that registers an ``Event`` subclass under its ``kind``.

  Args:
    order: its place among the types: events due after the same epoch fire by increasing order, and the
      ``initial``, ``forward``, ``optimizer`` and ``summary`` hooks run in it.

  Returns:
    The decorator; it returns the class unchanged and raises ``TypeError`` for a class that is not an ``Event``
    subclass, ``ValueError`` when another type already has its ``kind``.
  """

  def add(cls: type) -> type:
    if not (isinstance(cls, type) and issubclass(cls, Event)):
      raise TypeError(f"events.register decorates Event subclasses, got {cls!r}")
    before = REGISTRY.get(cls.kind)
    if before is not None and _name(before[1]) != _name(cls):  # the same class again (a reload) replaces itself
      raise ValueError(f"event kind {cls.kind!r} is registered twice: {_name(before[1])} and {_name(cls)}")
    REGISTRY[cls.kind] = (order, cls)
    return cls

  return add


def _name(cls: type) -> str:
  return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _import_methods() -> tuple[str, ...]:
  """Imports every module of ``METHODS`` by name (once per process); returns their names."""
  package = importlib.import_module(METHODS)
  names = tuple(f"{METHODS}.{info.name}" for info in pkgutil.iter_modules(package.__path__))
  for name in names:
    importlib.import_module(name)
  return names


def unregistered(classes) -> list[type]:
  """The concrete ``Event`` subclasses among ``classes`` that are defined in a module of ``METHODS`` but not
  registered (a forgotten ``@register``).

  Args:
    classes: candidate classes.

  Returns:
    Those classes, in the given order.
  """
  registered = {cls for _, cls in REGISTRY.values()}
  return [cls for cls in classes if issubclass(cls, Event) and not inspect.isabstract(cls)
          and cls.__module__.startswith(METHODS + ".") and cls not in registered]


def _subclasses(cls: type) -> list[type]:
  found = []
  for sub in cls.__subclasses__():
    found += [sub, *_subclasses(sub)]
  return found


def types() -> tuple[type[Event], ...]:
  """Every registered event type, by ``order`` (then kind), once every module of ``METHODS`` is imported.

  Returns:
    The types.

  Raises:
    TypeError: naming an ``Event`` subclass of a ``METHODS`` module that is not registered.
  """
  _import_methods()
  if missed := unregistered(_subclasses(Event)):
    raise TypeError(f"event type(s) {', '.join(map(_name, missed))} not registered: decorate with "
                    f"@events.register(order=...)")
  return tuple(cls for _, cls in sorted(REGISTRY.values(), key=lambda item: (item[0], item[1].kind)))


def from_config(c, phases: Phases) -> tuple[Event, ...]:
  """Every event config ``c`` asks for, in firing order.

  Args:
    c: the experiment config.
    phases: the run's training and fine-tune phases.

  Returns:
    The events of every registered type, in the types' order.

  Raises:
    ValueError: one line naming a bad field.
  """
  return tuple(event for event_type in types() for event in event_type.from_config(c, phases))


def initial(c, architecture: Architecture) -> Architecture:
  """The architecture a fresh run starts from: ``architecture`` through every type's ``initial``.

  Args:
    c: the experiment config.
    architecture: the task's initial record.

  Returns:
    The record.
  """
  for event_type in types():
    architecture = event_type.initial(c, architecture)
  return architecture


def forward(c, architecture: Architecture, model, params) -> Callable:
  """The apply function a run trains with: ``model.apply`` through every type's ``forward``.

  Args:
    c: the experiment config.
    architecture: the run's record.
    model: its linen model.
    params: its params.

  Returns:
    The apply function.

  Raises:
    ValueError: one line naming a field a type's check rejects (e.g. ``masks.param_reduction``).
  """
  apply_fn = model.apply
  for event_type in types():
    apply_fn = event_type.forward(c, architecture, model, params, apply_fn)
  return apply_fn


def optimizer(architecture: Architecture, params, opt_cfg: dict) -> tuple[dict, list]:
  """(optimizer config, extra optax transforms) for ``architecture``: ``opt_cfg`` through every type's ``optimizer``.

  Args:
    architecture: the architecture record the optimizer is for.
    params: its params.
    opt_cfg: the config's optimizer section (a dict).

  Returns:
    The optimizer config and the transforms to chain after it, in the types' order.
  """
  extra = []
  for event_type in types():
    opt_cfg, more = event_type.optimizer(architecture, params, opt_cfg)
    extra += more
  return opt_cfg, extra


def row(configured, architecture: Architecture, params) -> dict:
  """The columns the run's configured events add to an epoch's metrics row (``Event.row``).

  Args:
    configured: the run's events (``from_config``).
    architecture: the record after the epoch's events.
    params: its params.

  Returns:
    {column: number}.
  """
  fields = {}
  for event in configured:
    fields.update(event.row(architecture, params))
  return fields


def summary(architecture: Architecture, params) -> dict:
  """The fields every type adds to the end-of-run summary.

  Args:
    architecture: the final architecture record.
    params: the final params.

  Returns:
    {field: value}.
  """
  fields = {}
  for event_type in types():
    fields.update(event_type.summary(architecture, params))
  return fields


__all__ = ["METHODS", "REGISTRY", "Context", "Outcome", "Event", "register", "unregistered", "types", "from_config",
           "initial", "forward", "optimizer", "row", "summary"]
