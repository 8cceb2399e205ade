"""Optimizer-state surgery after a prune: the state for the pruned params.

After a rank prune (``update_state``, policy ``OPT_STATE_POLICIES``):

  reinit: fresh moments (``tx.init`` of the new params), step counts and schedule state kept
  slice:  every moment shaped like a pruned U/s/V keeps the kept directions (leaf[..., keep])

Leaves are matched to params by their trailing dict-key path and shape. After fixing a mask
(``with_keep_pruned``): the optimizer becomes ``optax.chain(tx, masks.keep_pruned(m))`` and its state keeps tx's.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.tree import trailing_dict_path
from jaxsvd.core.validate import check_choice
from jaxsvd.pruning.masks import KeepPrunedState, Masks
from jaxsvd.pruning.rank import PruneReport, take_last

OPT_STATE_POLICIES = ("reinit", "slice")


def _param_shapes(params) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {trailing_dict_path(key_path): tuple(np.shape(leaf)) for key_path, leaf in flat}


def slice_opt_state(opt_state, old_params, keep: Mapping[str, np.ndarray]):
  """Slices every optimizer-state leaf shaped like a pruned U/s/V (momenta, Adam moments).

  Leaves are matched to params by their trailing dict-key path and shape; counts and schedule state are
  left as they are.

  Args:
    opt_state: the optimizer state for ``old_params``.
    old_params: the params before pruning (for the shapes of U/s/V).
    keep: {SVD layer path: kept indices}, i.e. ``PruneReport.keep``.

  Returns:
    The optimizer state with every matching leaf replaced by leaf[..., keep[layer]].
  """
  shapes = _param_shapes(old_params)

  def surgery(key_path, leaf):
    path = trailing_dict_path(key_path)
    if path is None or "/" not in path:
      return leaf
    layer, name = path.rsplit("/", 1)
    if layer in keep and name in ("U", "s", "V") and tuple(np.shape(leaf)) == shapes.get(path):
      return take_last(leaf, keep[layer])
    return leaf

  return jax.tree_util.tree_map_with_path(surgery, opt_state)


def reinit_opt_state(tx, new_params, old_opt_state):
  """``tx.init(new_params)`` with every non-param leaf (step counts, schedule state) kept from the old state.

  A leaf is param-like when its trailing dict-key path names a leaf of ``new_params`` of the same shape.

  Args:
    tx: the optax transformation.
    new_params: the pruned params.
    old_opt_state: the state before pruning; must have the tree structure of ``tx.init(new_params)``.

  Returns:
    The fresh state's param-like leaves (zeroed moments) and the old state's other leaves.
  """
  fresh = tx.init(new_params)
  shapes = _param_shapes(new_params)

  def merge(key_path, new_leaf, old_leaf):
    path = trailing_dict_path(key_path)
    is_param_like = path in shapes and tuple(np.shape(new_leaf)) == shapes[path]
    return new_leaf if is_param_like else old_leaf

  return jax.tree_util.tree_map_with_path(merge, fresh, old_opt_state)


def opt_state_after(tx, opt_state, old_params, new_params, report: PruneReport, policy: str):
  """The optimizer state for ``new_params``: ``policy`` 'reinit' or 'slice' (see the module doc).

  Args:
    tx: the optax transformation (used by 'reinit').
    opt_state: the state before pruning.
    old_params: the params before pruning (used by 'slice').
    new_params: the pruned params (used by 'reinit').
    report: the ``PruneReport`` of the pruning (its ``keep``, used by 'slice').
    policy: 'reinit' (``reinit_opt_state``) or 'slice' (``slice_opt_state``).

  Returns:
    The new optimizer state.

  Raises:
    ValueError: if ``policy`` is neither.
  """
  check_choice("opt_state", policy, OPT_STATE_POLICIES)
  if policy == "slice":
    return slice_opt_state(opt_state, old_params, report.keep)
  return reinit_opt_state(tx, new_params, opt_state)


def update_state(state, new_params, apply_fn, report: PruneReport, policy: str):
  """A ``TrainState`` at the new ranks: new params and apply fn, optimizer state re-initialized or sliced.

  Args:
    state: the train state before pruning (its ``tx``, ``opt_state`` and ``params`` are used).
    new_params: the pruned params.
    apply_fn: the apply function of the model at the new ranks.
    report: the ``PruneReport`` of the pruning.
    policy: 'reinit' or 'slice' (``opt_state_after``).

  Returns:
    ``state.replace(params=new_params, opt_state=..., apply_fn=apply_fn)``.

  Raises:
    ValueError: if ``policy`` is neither.
  """
  opt_state = opt_state_after(state.tx, state.opt_state, state.params, new_params, report, policy)
  return state.replace(params=new_params, opt_state=opt_state, apply_fn=apply_fn)


def with_keep_pruned(opt_state, masks: Masks) -> tuple:
  """The state of ``optax.chain(tx, masks.keep_pruned(masks))`` from ``tx``'s state: the moments, step counts and
  schedule position go on unchanged, and the chain's last state holds the masks (so they are checkpointed).

  Args:
    opt_state: the state of ``tx``.
    masks: {leaf path: bool array shaped like the leaf}.

  Returns:
    (``opt_state``, ``KeepPrunedState`` of the masks as jax bool arrays).
  """
  return opt_state, KeepPrunedState({path: jnp.asarray(m, bool) for path, m in masks.items()})


__all__ = ["OPT_STATE_POLICIES", "slice_opt_state", "reinit_opt_state", "opt_state_after", "update_state",
           "with_keep_pruned"]
