"""One-line ValueErrors for bad configuration, raised before anything is traced or compiled."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
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


def dataclass_from_config(cls: type, cfg: Any) -> Any:
  """``cls`` built from the fields of a mapping/ConfigDict that it declares (others are ignored)."""
  names = {f.name for f in dataclasses.fields(cls)}
  return cls(**{k: v for k, v in dict(cfg).items() if k in names})
