"""One-line ValueErrors for bad configuration, raised before anything is traced or compiled."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
  """Checks that ``value`` is one of ``allowed``.

  Args:
    field: the name the error starts with.
    value: the value to check.
    allowed: the accepted values.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is not in ``allowed``.
  """
  allowed = tuple(allowed)
  if value not in allowed:
    raise ValueError(f"{field}={value!r} is not one of {allowed}")


def check_nonnegative(field: str, value: float) -> None:
  """Checks that ``value`` ≥ 0.

  Args:
    field: the name the error starts with.
    value: the number to check.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is negative, NaN or None.
  """
  if value is None or not value >= 0:  # also rejects NaN
    raise ValueError(f"{field} must be >= 0, got {value!r}")


def check_in_range(field: str, value: float, low: float, high: float, *, low_closed: bool, high_closed: bool) -> None:
  """Checks that ``value`` lies in the interval from ``low`` to ``high``, e.g. [low, high) or (low, high].

  Args:
    field: the name the error starts with.
    value: the number to check.
    low: the lower bound.
    high: the upper bound.
    low_closed: whether ``value`` = ``low`` is allowed.
    high_closed: whether ``value`` = ``high`` is allowed.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is outside the interval (or NaN).
  """
  above = value >= low if low_closed else value > low
  below = value <= high if high_closed else value < high
  if not (above and below):
    interval = ("[" if low_closed else "(") + f"{low}, {high}" + ("]" if high_closed else ")")
    raise ValueError(f"{field} must be in {interval}, got {value!r}")


def check_min_int(field: str, value: Any, minimum: int) -> None:
  """Checks that ``value`` is an int (not a bool) ≥ ``minimum``.

  Args:
    field: the name the error starts with.
    value: the value to check.
    minimum: the smallest allowed value.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is not an int, is a bool, or is below ``minimum``.
  """
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{field} must be an int >= {minimum}, got {value!r}")


def dataclass_from_config(cls: type, cfg: Any, section: str | None = None,
                          aliases: Mapping[str, str] | None = None) -> Any:
  """``cls`` built from the fields of a mapping/ConfigDict that it declares (others are ignored).

  Args:
    cls: a dataclass whose ``__post_init__`` raises ``ValueError``s that start with the field's name.
    cfg: the config section.
    section: its name, put before the field in errors (``'pruning'`` → "pruning.energy must be ...").
    aliases: {config field: dataclass field} where the names differ.

  Returns:
    The dataclass instance.
  """
  names = {f.name for f in dataclasses.fields(cls)}
  aliases = aliases or {}
  kwargs = {aliases.get(k, k): v for k, v in dict(cfg).items() if aliases.get(k, k) in names}
  try:
    return cls(**kwargs)
  except ValueError as err:
    if section is None:
      raise
    raise ValueError(f"{section}.{err}") from None


class FromConfig:
  """Mixin for the config dataclasses (``Strategy``, ``Floors``, ``Schedule``, ``RegularizerConfig``): build one
  from a config section with ``from_config``; ``config_section`` is the default section name for errors and
  ``config_aliases`` maps config field names to dataclass field names where they differ."""
  config_section: ClassVar[str | None] = None
  config_aliases: ClassVar[Mapping[str, str]] = {}

  @classmethod
  def from_config(cls, cfg: Any, section: str | None = None):
    """The dataclass from the fields of a config section that it declares (others are ignored).

    Args:
      cfg: a mapping or ``ml_collections.ConfigDict``.
      section: the section's name in errors (``'final_prune'`` → "final_prune.energy must be ..."); default
        ``config_section``.

    Returns:
      The instance.

    Raises:
      ValueError: one line naming ``section.field`` for the first invalid field.
    """
    return dataclass_from_config(cls, cfg, section or cls.config_section, cls.config_aliases)
