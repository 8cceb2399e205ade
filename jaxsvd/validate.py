"""One-line ValueErrors for bad configuration, raised before anything is traced or compiled."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
  allowed = tuple(allowed)
  if value not in allowed:
    raise ValueError(f"{field}={value!r} is not one of {allowed}")


def check_nonnegative(field: str, value: float) -> None:
  if value is None or not value >= 0:  # also rejects NaN
    raise ValueError(f"{field} must be >= 0, got {value!r}")


def check_in_range(field: str, value: float, low: float, high: float, *, low_closed: bool, high_closed: bool) -> None:
  above = value >= low if low_closed else value > low
  below = value <= high if high_closed else value < high
  if not (above and below):
    interval = ("[" if low_closed else "(") + f"{low}, {high}" + ("]" if high_closed else ")")
    raise ValueError(f"{field} must be in {interval}, got {value!r}")


def check_min_int(field: str, value: Any, minimum: int) -> None:
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
