"""``jax.jit`` with a compile counter: one trace per distinct argument shape set.

The wrapped Python function runs only when jax traces (i.e. when the shape/dtype/static
signature is new), so counting those calls counts compilations of this function.
"""

from __future__ import annotations

import functools
from typing import Any, Callable


class CountingJit:
  def __init__(self, fn: Callable, **jit_kwargs: Any):
    import jax

    self.traces = 0

    @functools.wraps(fn)
    def traced(*args, **kwargs):
      self.traces += 1
      return fn(*args, **kwargs)

    self._jitted = jax.jit(traced, **jit_kwargs)

  def __call__(self, *args, **kwargs):
    return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    return self._jitted.lower(*args, **kwargs)
