"""Unstructured pruning of a dense model to a parameter count: the fixed magnitude mask and the dynamic mask.

The selected leaves (default ``masks.is_kernel``: conv and dense kernels) lose k = P − round(P / R) entries, where
P counts every entry of the params (kernels, biases, BatchNorm γ/β) and R is ``param_reduction``: the model keeps
exactly round(P / R) nonzero params, and only selected entries are pruned (``pruned_count``).

  prune_to_count(params, opt_state, record, R)   the k smallest |w| over all selected leaves (one threshold,
                                                 ``masks.global_unstructured``) made exact zeros; the record's
                                                 ``masks`` = {leaf path: kept entries}; the optimizer state of
                                                 ``optax.chain(tx, masks.keep_pruned(m))`` (``opt_state.
                                                 with_keep_pruned``), so they stay zero
  dynamic_apply(apply_fn, params, R)             before the mask is fixed: the same count zeroed at every forward
                                                 pass, threshold recomputed in jit, straight-through gradients
                                                 (``dynamic.MaskedApply``)
  recorded_masks(params, record)                 a fixed mask's leaves as bool masks (params ≠ 0), to build the
                                                 ``keep_pruned`` transform again (a resume then restores its state)
  counts(params, record)                         params in all, nonzero, and kept in the masked leaves

MACs are not reduced: an unstructured mask skips no multiply-add of a dense conv.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxsvd.core.record import Architecture
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.pruning import masks as masks_lib
from jaxsvd.pruning.dynamic import MaskedApply
from jaxsvd.pruning.opt_state import with_keep_pruned

Select = Callable[[str, Any], bool]


def pruned_count(params, param_reduction: float, select: Select = masks_lib.is_kernel) -> tuple[int, int]:
  """(k selected entries to prune, N selected entries) so that round(P / param_reduction) of all P params stay.

  Args:
    params: the dense model's params.
    param_reduction: R = P / (params kept), ≥ 1.
    select: ``select(path, leaf) -> bool`` picks the prunable leaves (default: ``masks.is_kernel``).

  Returns:
    (k, N), k = P − round(P / R).

  Raises:
    ValueError: one line naming ``masks.param_reduction`` if the selected leaves have fewer than k + 1 entries.
  """
  leaves = leaves_by_path(params)
  total = sum(int(np.size(w)) for w in leaves.values())
  selected = sum(int(np.size(w)) for p, w in leaves.items() if select(p, w))
  k = total - round(total / param_reduction)
  if k >= selected:
    raise ValueError(f"masks.param_reduction={param_reduction} prunes {k} of {total} params, but the selected "
                     f"leaves have only {selected} entries (by default the conv/dense kernels: biases and BatchNorm "
                     f"are not pruned)")
  return k, selected


def dynamic_apply(apply_fn: Callable, params, param_reduction: float, select: Select = masks_lib.is_kernel
                  ) -> MaskedApply:
  """``apply_fn`` with the k smallest |w| of the selected leaves zeroed at every call (``pruned_count``'s k).

  Args:
    apply_fn: the model's ``apply(variables, *args, **kwargs)``.
    params: its params (only shapes are read).
    param_reduction: R, as in ``pruned_count``.
    select: the prunable leaves, as in ``pruned_count``.

  Returns:
    ``dynamic.MaskedApply`` keeping the N − k largest |w| of the selected leaves (one global threshold).

  Raises:
    ValueError: as ``pruned_count``.
  """
  k, selected = pruned_count(params, param_reduction, select)
  return MaskedApply(apply_fn, selected - k, select=select)


def prune_to_count(params, opt_state, architecture: Architecture, param_reduction: float,
                   select: Select = masks_lib.is_kernel) -> tuple[Any, tuple, Architecture, dict]:
  """The fixed global magnitude mask: ``params, opt_state, record → params', opt_state', record', report``. Pure.

  Args:
    params: the dense model's params.
    opt_state: the state of its optimizer ``tx``.
    architecture: its record.
    param_reduction: R, as in ``pruned_count``.
    select: the prunable leaves, as in ``pruned_count``.

  Returns:
    (params with the k smallest |w| of the selected leaves exactly zero (``masks.make_permanent``), the state of
    ``optax.chain(tx, masks.keep_pruned(m))`` with tx's state kept (``opt_state.with_keep_pruned``), the record
    with ``masks`` = {leaf path: kept entries}, report {'pruned': k, 'kernel_entries': N, 'kept': N − k}).

  Raises:
    ValueError: as ``pruned_count``.
  """
  k, selected = pruned_count(params, param_reduction, select)
  masks = masks_lib.global_unstructured(params, k, select=select)
  kept = {path: int(np.sum(np.asarray(m))) for path, m in masks.items()}
  report = {"pruned": k, "kernel_entries": selected, "kept": sum(kept.values())}
  return (masks_lib.make_permanent(params, masks), with_keep_pruned(opt_state, masks),
          architecture.replace(masks=kept), report)


def recorded_masks(params, architecture: Architecture) -> masks_lib.Masks | None:
  """The masks of a record with a fixed mask: {leaf path: params ≠ 0} over the record's ``masks``.

  Args:
    params: the params at that record.
    architecture: the record.

  Returns:
    The masks (for ``masks.keep_pruned``; a restored optimizer state then holds the exact ones), or None if the
    record has no fixed mask.
  """
  if architecture.masks is None:
    return None
  leaves = leaves_by_path(params)
  return {path: np.asarray(leaves[path]) != 0 for path in architecture.masks}


def counts(params, architecture: Architecture) -> dict[str, int]:
  """Parameter counts of a record with a fixed mask (empty without one).

  Args:
    params: the params at that record.
    architecture: the record.

  Returns:
    {'params_total': P, 'params_nonzero': P − pruned entries, 'masked_params_kept': kept entries of the masked
    leaves}, or {} if the record has no fixed mask.
  """
  if architecture.masks is None:
    return {}
  leaves = leaves_by_path(params)
  pruned = sum(int(np.size(leaves[path])) - kept for path, kept in architecture.masks.items())
  total = sum(int(np.size(w)) for w in leaves.values())
  return {"params_total": total, "params_nonzero": total - pruned,
          "masked_params_kept": sum(architecture.masks.values())}


__all__ = ["pruned_count", "dynamic_apply", "prune_to_count", "recorded_masks", "counts"]
