"""One-line ValueErrors for bad configuration and data, raised before anything is traced or compiled."""

from __future__ import annotations

import dataclasses
import math
import numbers
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
  """Checks that ``value`` is a finite number ≥ 0.

  Args:
    field: the name the error starts with.
    value: the number to check.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is negative, infinite, NaN, None or not a number.
  """
  if not _is_number(value) or not 0 <= value < math.inf:  # also rejects NaN
    raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")


def check_positive(field: str, value: float) -> None:
  """Checks that ``value`` is a finite number > 0.

  Args:
    field: the name the error starts with.
    value: the number to check.

  Returns:
    None.

  Raises:
    ValueError: if ``value`` is ≤ 0, infinite, NaN, None or not a number.
  """
  if not _is_number(value) or not 0 < value < math.inf:
    raise ValueError(f"{field} must be a finite number > 0, got {value!r}")


def _is_number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
  if not _is_number(value):
    raise ValueError(f"{field} must be a number, got {value!r}")
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
    cls: a dataclass whose ``__post_init__`` raises ``ValueError`` messages that start with the field's name.
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


def check_dataset(ds: Any, where: str) -> None:
  """One-line ValueErrors unless both splits hold (N, H, W, C) images with as many labels in [0, num_classes), and
  the test images have the train images' shape.

  Args:
    ds: a ``jaxsvd.data.Dataset``.
    where: where it came from, put in errors (e.g. ``data_dir=/data``).

  Returns:
    None.
  """
  for split in ("train", "test"):
    images, labels = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
    if images.ndim != 4 or labels.ndim != 1 or len(images) == 0:
      raise ValueError(f"{where}: {ds.name} {split} split has images {images.shape} and labels {labels.shape}; "
                       f"expected (N, H, W, C) and (N,) with N > 0")
    if len(images) != len(labels):
      raise ValueError(f"{where}: {ds.name} {split} split has {len(images)} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= ds.num_classes)]
    if bad.size:
      raise ValueError(f"{where}: {ds.name} {split} labels must be in [0, {ds.num_classes}), found "
                       f"{bad.size} outside (e.g. {int(bad[0])})")
  if ds.train_images.shape[1:] != ds.test_images.shape[1:]:
    raise ValueError(f"{where}: {ds.name} test images are {ds.test_images.shape[1:]} but train images "
                     f"{ds.train_images.shape[1:]}")


__all__ = ["check_choice", "check_nonnegative", "check_positive", "check_in_range", "check_min_int",
           "dataclass_from_config", "FromConfig", "check_dataset"]
