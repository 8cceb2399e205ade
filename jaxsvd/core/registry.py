"""Builders resolved by name, so the core never imports a framework or the model zoo (big_vision style).

Two kinds of builder are registered when their package is imported (``import jaxsvd`` imports both):

  'zoo'          ``jaxsvd.models.build_model``: (name, num_classes, svd, ranks=, widths=, ...) → linen model
  'user/linen'   ``jaxsvd.linen.svdifylib.from_record``: (record, module) → the user's module in its saved form

``Architecture.build_model`` and ``Architecture.build_user_model`` look them up here.
"""

from __future__ import annotations

from collections.abc import Callable

_BUILDERS: dict[str, Callable] = {}


def register(name: str, builder: Callable) -> Callable:
  """Registers ``builder`` under ``name`` (the last registration of a name wins).

  Args:
    name: the builder's name, e.g. 'zoo' or 'user/linen'.
    builder: the function.

  Returns:
    ``builder`` unchanged (so it can decorate).
  """
  _BUILDERS[name] = builder
  return builder


def lookup(name: str) -> Callable:
  """The builder registered under ``name``.

  Args:
    name: as passed to ``register``.

  Returns:
    The builder.

  Raises:
    ValueError: one line naming ``name`` and the registered names.
  """
  if name not in _BUILDERS:
    raise ValueError(f"no builder {name!r} is registered (registered: {sorted(_BUILDERS)}); import its package")
  return _BUILDERS[name]


def names() -> tuple[str, ...]:
  """The registered builder names, sorted."""
  return tuple(sorted(_BUILDERS))


__all__ = ["lookup", "names", "register"]
