"""Mask-based pruning as pure functions on params (``torch.nn.utils.prune`` semantics, functional).

A mask is a bool array shaped like its leaf (True = kept); ``masks`` maps a leaf's '/'-joined path
(e.g. ``'Conv_0/kernel'``) to its mask, so masks are data beside the params, like ranks.

  l1_unstructured(w, a)       prune the k = round(a·n) entries of smallest |w|
  random_unstructured(key, w, a)  prune k entries chosen uniformly at random
  ln_structured(w, a, n, axis)    prune the k = round(a·C) slices along ``axis`` of smallest ‖·‖ₙ
                              (norm over every other axis; axis = -1 is a conv's output channels)
  global_unstructured(params, a)  one |w| threshold over all selected leaves: k = round(a·N) in total
  layerwise(params, fn)       fn(w, mask) on every selected leaf → masks
  make_permanent(params, masks)   w ⊙ m: pruned entries become exact zeros in the params
  keep_pruned(masks)          optax transform: updates ⊙ m, so pruned entries stay zero while training
  select(params, fn)          {path: True} for every leaf fn(path, leaf) selects (whole-leaf masks)
  label_fn(masks, on, off)    masks → the label-tree function of ``optax.multi_transform`` / ``partition``

This is the one mask convention of the library: a mask is a bool array shaped like its leaf (True = kept /
selected), or a Python bool for the whole leaf, keyed by the leaf's '/'-joined path (``jaxsvd.core.tree``). It is
converted to pytrees only where it meets optax (``keep_pruned``, ``label_fn``, ``optim.l1_subgradient``).

Pruning again with an existing ``mask`` prunes a fraction ``a`` of what is *still kept* (entries, or
slices for ``ln_structured``), as torch's PruningContainer does. ``a`` is a fraction in [0, 1] or an
int count. Masks are computed on the host (pruning events are rare; k is data-dependent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsvd.core.tree import leaves_by_path, map_with_path

Amount = float | int
Masks = dict[str, Any]  # {leaf path: bool array shaped like the leaf, or a bool for all of it}


def is_kernel(path: str, leaf) -> bool:
  """The default selection: weight matrices/kernels (leaves named 'kernel', ≥ 2-D).

  Args:
    path: the leaf's '/'-joined path.
    leaf: the leaf (only its ndim is used).

  Returns:
    True iff the last key of ``path`` is 'kernel' and the leaf has ≥ 2 dimensions.
  """
  return path.rsplit("/", 1)[-1] == "kernel" and np.ndim(leaf) >= 2


def _count(amount: Amount, n: int, what: str) -> int:
  if isinstance(amount, bool) or not isinstance(amount, (int, float)):
    raise ValueError(f"amount must be a fraction in [0, 1] or an int count, got {amount!r}")
  if isinstance(amount, int):
    if not 0 <= amount <= n:
      raise ValueError(f"amount={amount} {what} to prune, but only {n} are left")
    return amount
  if not 0.0 <= amount <= 1.0:
    raise ValueError(f"amount must be a fraction in [0, 1] or an int count, got {amount!r}")
  return round(amount * n)


def _kept(shape, mask) -> np.ndarray:
  """The mask as a bool array of ``shape`` (None: all kept; a Python bool: the whole leaf)."""
  return np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), shape).copy()


def round_up(count: int, cap: int, multiple: int = 1) -> int:
  """``count`` rounded up to a multiple of ``multiple`` (vector / tile widths: 8, 16), at most ``cap``: a kept rank
  (``rank.Floors``) or channel width (slimming, pruning from scratch).

  Args:
    count: the count to round.
    cap: the upper bound (e.g. the full rank or width), applied after rounding.
    multiple: the multiple to round up to (1: no rounding).

  Returns:
    min(cap, ⌈count / multiple⌉ · multiple), as an int.
  """
  return int(min(cap, -(-count // multiple) * multiple))


def prune_smallest(scores: np.ndarray, kept: np.ndarray, amount: Amount, what: str = "entries") -> np.ndarray:
  """``kept`` with the k = amount·(kept count) kept entries of smallest score set False (ties: lower index first).

  Args:
    scores: one score per entry (any shape with ``kept``'s size).
    kept: bool array, True where an entry is still kept; only those entries are candidates and counted.
    amount: a fraction in [0, 1] (k = round(amount · kept count)) or an int count k.
    what: the name of the entries in errors ('entries', 'slices').

  Returns:
    A new bool array shaped like ``kept``.

  Raises:
    ValueError: if ``amount`` is not a fraction in [0, 1] or an int in [0, kept count] (bools rejected).
  """
  flat_kept = kept.ravel()
  idx = np.flatnonzero(flat_kept)
  k = _count(amount, idx.size, what)
  order = idx[np.argsort(scores.ravel()[idx], kind="stable")]
  out = flat_kept.copy()
  out[order[:k]] = False
  return out.reshape(kept.shape)


def l1_unstructured(weight, amount: Amount, mask=None) -> jax.Array:
  """Mask pruning the entries of smallest |w| (among those ``mask`` still keeps).

  Args:
    weight: the leaf w.
    amount: a fraction of the still-kept entries, or an int count of them.
    mask: the leaf's current bool mask (None: all kept).

  Returns:
    A bool mask shaped like ``weight``: ``mask`` with k more entries False.

  Raises:
    ValueError: on a bad ``amount`` (see ``prune_smallest``).
  """
  w = np.asarray(weight)
  return jnp.asarray(prune_smallest(np.abs(w), _kept(w.shape, mask), amount))


def random_unstructured(key, weight, amount: Amount, mask=None) -> jax.Array:
  """Mask pruning entries chosen uniformly at random (among those ``mask`` still keeps).

  Args:
    key: a PRNG key; the entries with the smallest ``jax.random.uniform(key, shape)`` scores are pruned.
    weight, amount, mask: as in ``l1_unstructured`` (only the shape of ``weight`` is used).

  Returns:
    As ``l1_unstructured``.
  """
  scores = np.asarray(jax.random.uniform(key, np.shape(weight)))
  return jnp.asarray(prune_smallest(scores, _kept(np.shape(weight), mask), amount))


def ln_structured(weight, amount: Amount, n: float = 2, axis: int = -1, mask=None) -> jax.Array:
  """Mask pruning whole slices along ``axis`` with the smallest Lₙ norm (over all other axes).

  Norms are of the masked weight; slices that ``mask`` has already removed entirely are not counted.

  Args:
    weight: the leaf w.
    amount: a fraction of the still-alive slices, or an int count of them.
    n: the norm's order (> 0, or ``np.inf``): ‖x‖ₙ = (Σ|x_j|ⁿ)^(1/n) over each slice's entries.
    axis: the axis whose slices are pruned (-1: a kernel's output channels).
    mask: the leaf's current bool mask (None: all kept).

  Returns:
    A bool mask shaped like ``weight``: ``mask`` with k more whole slices False.

  Raises:
    ValueError: if ``n`` is not > 0 or inf, or on a bad ``amount`` (see ``prune_smallest``).
  """
  if not (n == np.inf or (isinstance(n, (int, float)) and n > 0)):
    raise ValueError(f"ln_structured: n must be > 0 or inf, got {n!r}")
  w = np.asarray(weight)
  kept = _kept(w.shape, mask)
  axis = axis % w.ndim
  others = tuple(i for i in range(w.ndim) if i != axis)
  norms = np.linalg.norm(np.moveaxis(w * kept, axis, -1).reshape(-1, w.shape[axis]), ord=n, axis=0)
  alive = kept.any(axis=others)
  keep_slices = prune_smallest(norms, alive, amount, what="slices")
  shape = [1] * w.ndim
  shape[axis] = w.shape[axis]
  return jnp.asarray(kept & keep_slices.reshape(shape))


def _selected(params, select: Callable[[str, Any], bool]) -> dict[str, Any]:
  return {p: leaf for p, leaf in leaves_by_path(params).items() if select(p, leaf)}


def select(params, fn: Callable[[str, Any], bool]) -> Masks:
  """Whole-leaf masks {path: True} for every leaf of ``params`` that ``fn(path, leaf)`` selects.

  Args:
    params: a params pytree.
    fn: ``fn(path, leaf) -> bool``.

  Returns:
    {path: True} for the selected leaves.
  """
  return {p: True for p in _selected(params, fn)}


def layerwise(params, fn: Callable[[Any, Any], jax.Array], masks: Mapping[str, Any] | None = None,
              select: Callable[[str, Any], bool] = is_kernel) -> Masks:
  """{path: fn(leaf, its current mask or None)} for every selected leaf, e.g.
  ``layerwise(params, lambda w, m: l1_unstructured(w, 0.3, m))``.

  Args:
    params: a params pytree.
    fn: ``fn(leaf, mask or None) -> mask``.
    masks: the current masks (None: none).
    select: ``select(path, leaf) -> bool`` picks the leaves (default: ``is_kernel``).

  Returns:
    ``masks`` updated with the new mask of every selected leaf (masks of other leaves kept).
  """
  masks = masks or {}
  return {**masks, **{p: fn(w, masks.get(p)) for p, w in _selected(params, select).items()}}


def global_unstructured(params, amount: Amount, masks: Mapping[str, Any] | None = None,
                        select: Callable[[str, Any], bool] = is_kernel) -> Masks:
  """Masks pruning, over all selected leaves together, the k = round(amount·N) kept entries of smallest |w|.

  Args:
    params: a params pytree.
    amount: a fraction of the N entries still kept over all selected leaves, or an int count k.
    masks: the current masks (None: none); their kept entries are the candidates.
    select: ``select(path, leaf) -> bool`` picks the leaves (default: ``is_kernel``).

  Returns:
    ``masks`` updated with a bool mask for every selected leaf (one global |w| threshold).

  Raises:
    ValueError: if no leaf is selected, or on a bad ``amount`` (see ``prune_smallest``).
  """
  masks = masks or {}
  leaves = _selected(params, select)
  if not leaves:
    raise ValueError("global_unstructured: no leaf of params is selected")
  scores = [np.abs(np.asarray(w)).ravel() for w in leaves.values()]
  kept = [_kept(np.shape(w), masks.get(p)).ravel() for p, w in leaves.items()]
  new = prune_smallest(np.concatenate(scores), np.concatenate(kept), amount)
  out, start = dict(masks), 0
  for path, w in leaves.items():
    out[path] = jnp.asarray(new[start:start + np.size(w)].reshape(np.shape(w)))
    start += np.size(w)
  return out


def _check_paths(params, masks: Mapping[str, Any]) -> dict[str, Any]:
  leaves = leaves_by_path(params)
  for path, m in masks.items():
    if path not in leaves:
      raise ValueError(f"mask for {path!r} has no leaf in params")
    if isinstance(m, (bool, np.bool_)):
      continue
    if np.shape(m) != np.shape(leaves[path]):
      raise ValueError(f"mask for {path!r} has shape {np.shape(m)}, the leaf {np.shape(leaves[path])}")
  return leaves


def make_permanent(params, masks: Mapping[str, Any]):
  """params with w ⊙ m on every masked leaf: the pruned entries become exact zeros (masks may then be dropped;
  without ``keep_pruned`` further training lets them regrow).

  Args:
    params: a params pytree.
    masks: {leaf path: bool array shaped like the leaf}.

  Returns:
    A pytree like ``params``; unmasked leaves are unchanged.

  Raises:
    ValueError: if a mask's path is not a leaf of ``params`` or an array mask's shape differs from the leaf's
      (a Python bool masks the whole leaf).
  """
  _check_paths(params, masks)
  return map_with_path(lambda path, w: w * jnp.asarray(masks[path], w.dtype) if path in masks else w, params)


class KeepPrunedState(NamedTuple):
  """The optax state of ``keep_pruned``: ``masks`` {leaf path: bool array} (copies of the masks it was built
  with, replaceable with ``optax.tree_utils.tree_set``)."""
  masks: Masks


def keep_pruned(masks: Mapping[str, Any]) -> optax.GradientTransformation:
  """u ← u ⊙ m on every masked leaf (put it last in the chain): pruned weights that are zero stay zero,
  whatever the optimizer, momentum or weight decay do. The masks live in the optax state (so they are
  checkpointed with it); replace them with ``optax.tree_utils.tree_set(opt_state, masks=new)``.

  Args:
    masks: {leaf path: bool array shaped like the leaf, or a Python bool for the whole leaf}.

  Returns:
    An ``optax.GradientTransformation``; its ``init`` raises ValueError if a mask's path is not a leaf of the
    params or an array mask's shape differs, and its state is a ``KeepPrunedState`` of full-shape masks.
  """

  def init_fn(params):
    leaves = _check_paths(params, masks)  # full-shape copies: no shared (donated) buffers
    return KeepPrunedState({p: jnp.array(_kept(np.shape(leaves[p]), m)) for p, m in masks.items()})

  def update_fn(updates, state, params=None):
    del params
    apply = lambda path, u: jnp.where(state.masks[path], u, jnp.zeros_like(u)) if path in state.masks else u
    return map_with_path(apply, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def sparsity(masks: Mapping[str, Any]) -> dict[str, float]:
  """Fraction of pruned entries per masked leaf, and over all of them ('total').

  Args:
    masks: {leaf path: bool mask}.

  Returns:
    {leaf path: 1 − mean(m)} plus 'total': pruned entries / all masked entries (0.0 if there are none).
  """
  if bools := sorted(p for p, m in masks.items() if isinstance(m, (bool, np.bool_))):
    raise ValueError(f"sparsity needs array masks (entry counts); {bools} are whole-leaf bools")
  per = {p: 1.0 - float(np.mean(np.asarray(m))) for p, m in masks.items()}
  total = sum(np.size(m) for m in masks.values())
  pruned = sum(np.size(m) - int(np.sum(np.asarray(m))) for m in masks.values())
  return {**per, "total": pruned / total if total else 0.0}


def label_fn(masks: Mapping[str, Any], on: str, off: str) -> Callable[[Any], Any]:
  """params → a label tree (``on`` for leaves whose whole-leaf mask is True, ``off`` elsewhere), the form
  ``optax.multi_transform`` and ``optax.partition`` take.

  Args:
    masks: {leaf path: mask}; only the Python value ``True`` labels a leaf ``on`` (array masks give ``off``).
    on: the label of selected leaves.
    off: the label of every other leaf.

  Returns:
    A function ``params -> label tree`` shaped like params.
  """
  return lambda params: map_with_path(lambda path, _: on if masks.get(path) is True else off, params)


__all__ = ["is_kernel", "round_up", "prune_smallest", "l1_unstructured", "random_unstructured", "ln_structured",
           "select", "layerwise", "global_unstructured", "make_permanent", "KeepPrunedState", "keep_pruned",
           "sparsity", "label_fn"]
