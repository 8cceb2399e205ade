"""The rank-strategy base class and its registry: a strategy is a small frozen dataclass registered by name.

A strategy holds only its own fields, validates them in ``__post_init__`` (one-line ValueErrors that start with
the field's name) and answers one question: how many singular directions does a layer keep?

  per-layer (``is_global = False``):  ``keep_count(s_sorted) -> k`` from one layer's |s| sorted descending;
  global (``is_global = True``):      ``keep_counts({path: s_sorted}, floor, macs) -> {path: k}``, one decision
                                      over all layers (floors applied inside, through ``floor``).

``register(name)`` puts a class in the registry (the class's ``name`` is then ``name``); ``resolve(name)`` finds it
(jaxpruner's ``ALGORITHM_REGISTRY`` and big_vision's ``Registry`` resolve their plug-ins the same way). Calling the
base class picks the registered class by name, so ``Strategy('energy', energy=0.05)`` is an ``Energy``;
``Strategy.from_config(section)`` reads the name from the section's ``strategy`` field and only that strategy's
fields from the rest (a config section carries every strategy's fields: ``configs/default.py`` builds them from
``config_defaults``). Nothing outside a strategy tests a strategy's name: callers ask ``is_global``,
``needs_macs``, ``can_ramp``, ``describe()``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from jaxsvd.core.validate import FromConfig, dataclass_from_config

DEFAULT = "energy"  # the strategy of ``Strategy()`` and of a config section without a ``strategy`` field
_REGISTRY: dict[str, type[Strategy]] = {}
_RESERVED = ("name", "strategy")  # a field may not shadow the name or the config field that holds it


class _ByName(type):
  """Metaclass of ``Strategy``: the base class called with a name builds the registered class of that name, and
  any strategy called with a field it does not declare is a one-line ValueError."""

  def __call__(cls, *args, **kwargs):
    if cls is Strategy:
      if "name" in kwargs:
        name = kwargs.pop("name")
      else:
        name, args = (args[0], args[1:]) if args else (DEFAULT, ())
      cls = resolve(name)
    if foreign := [k for k in kwargs if k not in cls.field_names()]:
      raise ValueError(f"{foreign[0]} is not a field of strategy {cls.name!r} (its fields: "
                       f"{', '.join(cls.field_names()) or 'none'})")
    return super(_ByName, cls).__call__(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class Strategy(FromConfig, metaclass=_ByName):
  """How many directions each SVD layer keeps: the base of every registered strategy.

  ``Strategy(name, **fields)`` builds the strategy registered as ``name`` (default 'energy'), e.g.
  ``Strategy('count', prune_by=2)``; a field the strategy does not declare, or an unknown name, is a one-line
  ValueError. Subclasses are frozen dataclasses whose fields all have defaults; see the module doc.
  """
  name: ClassVar[str] = ""  # set by ``register``
  is_global: ClassVar[bool] = False  # True: ``keep_counts`` decides over all layers at once
  needs_macs: ClassVar[bool] = False  # True: ``prune`` needs the model's MACs counter (``macs=``)
  can_ramp: ClassVar[bool] = False  # True: ``ramped`` approaches the target over a schedule's events

  @classmethod
  def field_names(cls) -> tuple[str, ...]:
    """The strategy's own fields, in declaration order (none on the base class)."""
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def from_config(cls, cfg: Any, section: str | None = None) -> Strategy:
    """The strategy a config section names (its ``strategy`` field, default 'energy'), from its fields only.

    Args:
      cfg: a mapping or ``ml_collections.ConfigDict``; fields of other strategies (and floors, schedule, ...) in
        it are ignored.
      section: the section's name in errors ('final_prune' → "final_prune.energy must be ...").

    Returns:
      The strategy (on a subclass: that class, whatever ``strategy`` says).

    Raises:
      ValueError: one line naming ``section.strategy`` (an unknown name, listing the registered ones) or the
        first invalid field.
    """
    prefix = f"{section}." if section else ""
    strategy_cls = cls
    if cls is Strategy:
      try:
        strategy_cls = resolve(dict(cfg).get("strategy", DEFAULT))
      except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None
    return dataclass_from_config(strategy_cls, cfg, section)

  def keep_count(self, s_sorted: np.ndarray) -> int:
    """The per-layer rule: how many of a layer's directions to keep.

    Args:
      s_sorted: one layer's |s| (or √importance) sorted descending, float64.

    Returns:
      k (may be ≤ 0 or > r: ``Floors.apply`` bounds it).

    Raises:
      ValueError: on a global strategy, which decides over all layers at once (``keep_counts``).
    """
    del s_sorted
    raise ValueError(f"strategy={self.name!r} decides over all layers at once: use prune(params, strategy, ...)")

  def keep_counts(self, s_sorted: Mapping[str, np.ndarray], floor: Callable[[str, int], int],
                  macs: Any = None) -> dict[str, int]:
    """The global rule (``is_global``): every layer's kept count at once.

    Args:
      s_sorted: {layer path: |s| (or √importance) sorted descending along the last axis}; (r,) or (*L, r).
      floor: (path, k) → k raised to the floors (``Floors.apply`` with the layer's ranks).
      macs: the model's ``budget.MacsCounter`` where ``needs_macs``, else None.

    Returns:
      {layer path: k}, floors applied.

    Raises:
      ValueError: on a per-layer strategy.
    """
    del s_sorted, floor, macs
    raise ValueError(f"strategy={self.name!r} decides per layer: use keep_count")

  def ramped(self, event: int, events: int, ramp: str) -> Strategy:
    """The strategy for the ``event``-th of ``events`` scheduled events under ``ramp`` (``can_ramp`` only).

    Args:
      event: the event's 1-based index in the schedule.
      events: how many events the schedule has.
      ramp: how the target is approached ('none' | 'linear' | 'cubic': ``budget.RAMPS``).

    Returns:
      A strategy of the same class with its target at this event.

    Raises:
      ValueError: on a strategy that does not ramp.
    """
    del event, events
    raise ValueError(f"strategy={self.name!r} has no ramp (budget_ramp={ramp!r})")

  def describe(self) -> str:
    """The name and its first field, e.g. 'energy=0.05' or 'ratio (reduce_by=0.25)' (a plot's title)."""
    if not self.field_names():
      return self.name
    field = self.field_names()[0]
    value = getattr(self, field)
    shown = f"{field}={value:g}" if isinstance(value, numbers.Real) else f"{field}={value!r}"
    return shown if field == self.name else f"{self.name} ({shown})"


def register(name: str, *, replace: bool = False) -> Callable[[type[Strategy]], type[Strategy]]:
  """A class decorator registering a strategy under ``name`` (which becomes its ``name``).

  Args:
    name: the name configs and ``Strategy(name, ...)`` use.
    replace: allow replacing a strategy registered under the same name.

  Returns:
    The decorator; it returns the class unchanged but for ``name``.

  Raises:
    ValueError: (by the decorator) if ``name`` is taken and not ``replace``.
    TypeError: (by the decorator) unless the class is a dataclass subclass of ``Strategy`` whose fields all have
      defaults and none is called 'name' or 'strategy', and it defines ``keep_count`` or sets ``is_global``.
  """

  def decorate(cls: type[Strategy]) -> type[Strategy]:
    _check_class(cls)
    if name in _REGISTRY and not replace:
      raise ValueError(f"a rank strategy {name!r} is already registered ({_REGISTRY[name].__qualname__}); "
                       f"pass replace=True to replace it")
    cls.name = name
    _REGISTRY[name] = cls
    return cls

  return decorate


def _check_class(cls: type) -> None:
  where = getattr(cls, "__qualname__", repr(cls))
  if not (isinstance(cls, type) and issubclass(cls, Strategy) and "__dataclass_fields__" in vars(cls)):
    raise TypeError(f"{where}: a rank strategy is a @dataclasses.dataclass(frozen=True) subclass of Strategy")
  for field in dataclasses.fields(cls):
    if field.name in _RESERVED:
      raise TypeError(f"{where}: a strategy's field may not be called {field.name!r}")
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
      raise TypeError(f"{where}.{field.name} needs a default (config sections carry every strategy's fields)")
  if not cls.is_global and cls.keep_count is Strategy.keep_count:
    raise TypeError(f"{where}: define keep_count (a per-layer rule), or keep_counts with is_global = True")


def unregister(name: str) -> None:
  """Removes the strategy registered as ``name`` (tests and examples that register a toy strategy).

  Args:
    name: a registered name.

  Raises:
    ValueError: one line listing the registered names if ``name`` is not one.
  """
  resolve(name)
  del _REGISTRY[name]


def resolve(name: str) -> type[Strategy]:
  """The strategy class registered as ``name``.

  Args:
    name: e.g. 'energy'.

  Returns:
    The class.

  Raises:
    ValueError: one line, "strategy='x' is not one of (...)" listing the registered names.
  """
  if not isinstance(name, str) or name not in _REGISTRY:
    raise ValueError(f"strategy={name!r} is not one of {names()}")
  return _REGISTRY[name]


def names() -> tuple[str, ...]:
  """The registered strategy names, in registration order."""
  return tuple(_REGISTRY)


def config_defaults() -> dict[str, Any]:
  """The strategy fields of a config section (``experiments/configs/default.py``), with their defaults.

  Returns:
    {field: default} over every registered strategy's fields (the first registration wins a shared field name).
  """
  defaults: dict[str, Any] = {}
  for cls in _REGISTRY.values():
    for field in dataclasses.fields(cls):
      value = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
      defaults.setdefault(field.name, value)
  return defaults


__all__ = ["DEFAULT", "Strategy", "register", "unregister", "resolve", "names", "config_defaults"]
