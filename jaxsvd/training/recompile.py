"""A jit/pmap wrapper with a compile counter: one trace per distinct argument shape set.

The wrapped Python function runs only when jax traces it (a new shape/dtype/static signature),
so counting those runs counts the compilations of this function.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from jaxsvd.training import xla_options


class CountingJit:
  """``fn`` under a jit-like ``transform``, called like it; ``traces`` counts how many times jax has traced ``fn``
  (each new argument shape/dtype/static signature traces it again; ``xla_options.autotuned_jit`` once per variant).
  """

  def __init__(self, fn: Callable, transform: Callable | None = None, **transform_kwargs: Any):
    """``transform`` defaults to ``xla_options.jit`` (jax.jit with the measured-faster options).

    Args:
      fn: the function to wrap.
      transform: ``transform(fn, **transform_kwargs)`` → callable, e.g. ``jax.pmap`` or ``xla_options.autotuned_jit``.
      **transform_kwargs: passed to ``transform`` (static_argnums, donate_argnums, axis_name, ...).
    """
    self.traces = 0

    @functools.wraps(fn)
    def traced(*args, **kwargs):
      self.traces += 1
      return fn(*args, **kwargs)

    self._compiled = (transform or xla_options.jit)(traced, **transform_kwargs)

  def __call__(self, *args, **kwargs):
    return self._compiled(*args, **kwargs)


__all__ = ["CountingJit"]
