"""Execution modes of a built linen model: ``in_mode`` re-targets a bound ``.apply`` to another SVD mode.

Registered as 'mode/linen' (``jaxsvd.core.registry``): ``training.train_state.eval_step(mode=...)`` applies it
without importing linen.
"""

from __future__ import annotations

from typing import Callable

from jaxsvd.core import registry
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.svd import MODES
from jaxsvd.core.validate import check_choice
from jaxsvd.linen.svdifylib import SVDModel


def in_mode(apply_fn: Callable, mode: str | None) -> Callable:
  """``apply_fn`` (a zoo model's or an ``jaxsvd.linen.SVDModel``'s bound ``.apply``) of the same model with its
  SVD layers in ``mode``.

  The result is the same function to float tolerance; only the execution differs.

  Args:
    apply_fn: the bound ``.apply`` to convert.
    mode: one of ``jaxsvd.core.svd.MODES``, or None.

  Returns:
    The ``.apply`` of the model in ``mode``; ``mode=None``, dense models and other functions are returned
    unchanged.

  Raises:
    ValueError: if ``mode`` is not None and not one of ``jaxsvd.core.svd.MODES``.
  """
  if mode is None:
    return apply_fn
  check_choice("mode", mode, MODES)
  model = getattr(apply_fn, "__self__", None)
  if isinstance(model, SVDModel):
    return apply_fn if model.mode == mode else model.with_mode(mode).apply
  svd = getattr(model, "svd", None)
  if not isinstance(svd, SVDSpec) or svd.mode == mode:
    return apply_fn
  return model.clone(svd=svd.with_mode(mode)).apply


registry.register("mode/linen", in_mode)


__all__ = ["in_mode"]
