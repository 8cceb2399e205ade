"""Dynamic pruning: the smallest-|w| weights are zeroed at every forward pass, the threshold recomputed from the
current weights inside jit, instead of a fixed mask (Zhu & Gupta's magnitude criterion applied on the fly; "dynamic
network surgery" without the hysteresis).

For the selected leaves w (default ``masks.is_kernel``: conv and dense kernels), keep K of their N entries:

  global      t = the K-th largest |w| over all selected leaves together;  m = |w| ≥ t   (one threshold)
  per layer   t_l = the K_l-th largest |w_l| of each leaf, K_l = round(keep · N_l)       (one per leaf)
  forward     ŵ = w ⊙ m, written  ŵ = w + stop_gradient(w ⊙ m − w)
  gradient    ∂L/∂w = ∂L/∂ŵ  for *every* entry (straight-through): m and t get no gradient, and a pruned weight
              still moves with the gradient of the masked model's loss, so it comes back once its |w| is among
              the K largest again. The value of ŵ is exactly w ⊙ m (x + (−x) = 0 in floating point).

``dynamic_prune(params, keep)`` is a pure params → masked params function: apply it inside the loss, before
``model.apply`` (``MaskedApply`` wraps an apply function that way). Ties at t are all kept (|w| ≥ t), so with
tied magnitudes more than K entries may survive; ``masks.global_unstructured`` gives an exact count on the host
(the experiments' final fixed mask).

SVD layers (``jaxsvd.linen.DenseSVD`` / ``ConvSVD``, leaves U, s, V) are not selected by default: a zero entry of
U or V does not make W = U·diag(s)·Vᵀ sparse (every entry of W still sums over the rank), so it removes no weight
of the layer and no MAC; the structured equivalent is the rank, pruned by ``pruning.rank``. Selecting the 's'
leaves (``select=lambda path, w: path.endswith('/s')``) gives dynamic *rank* pruning: the singular values below the
threshold are zeroed each forward pass, straight-through, and may come back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.tree import leaves_by_path, map_with_path
from jaxsvd.pruning.masks import Amount, Masks, is_kernel


def _selected(params, select: Callable[[str, Any], bool]) -> dict[str, Any]:
  leaves = {p: w for p, w in leaves_by_path(params).items() if select(p, w)}
  if not leaves:
    raise ValueError("dynamic pruning: no leaf of params is selected")
  return leaves


def keep_count(keep: Amount, n: int) -> int:
  """How many of ``n`` entries a keep fraction or count keeps.

  Args:
    keep: a fraction in (0, 1] (K = max(1, round(keep · n))) or an int count K in [1, n] (bools rejected).
    n: the number of entries.

  Returns:
    K.

  Raises:
    ValueError: if ``keep`` is neither.
  """
  if isinstance(keep, bool) or not isinstance(keep, (int, float)):
    raise ValueError(f"dynamic pruning: keep must be a fraction in (0, 1] or an int count, got {keep!r}")
  if isinstance(keep, int):
    if not 1 <= keep <= n:
      raise ValueError(f"dynamic pruning: keep={keep} entries, but the selected leaves have {n}")
    return keep
  if not 0.0 < keep <= 1.0:
    raise ValueError(f"dynamic pruning: keep must be a fraction in (0, 1] or an int count, got {keep!r}")
  return max(1, round(keep * n))


def _kth_largest(values: jax.Array, k: int) -> jax.Array:
  return jnp.sort(values)[values.size - k]


def dynamic_thresholds(params, keep: Amount, per_layer: bool = False,
                       select: Callable[[str, Any], bool] = is_kernel) -> dict[str, jax.Array]:
  """The threshold t of every selected leaf (traceable: works inside jit; K is static).

  Args:
    params: a params pytree (concrete or traced).
    keep: what to keep: a fraction in (0, 1] of the selected entries, or (global only) an int count of them.
    per_layer: one threshold per leaf (K_l = round(keep · N_l), keep must be a fraction) instead of one global one.
    select: ``select(path, leaf) -> bool`` picks the leaves (default: ``masks.is_kernel``).

  Returns:
    {leaf path: scalar t}: the K-th largest |w| (globally, or of the leaf), the same array for every leaf when
    global.

  Raises:
    ValueError: if no leaf is selected, ``keep`` is out of range, or an int ``keep`` with ``per_layer``.
  """
  leaves = _selected(params, select)
  if per_layer:
    if isinstance(keep, int) and not isinstance(keep, bool):
      raise ValueError(f"dynamic pruning: per_layer needs keep as a fraction, got the count {keep}")
    return {p: _kth_largest(jnp.abs(w).ravel(), keep_count(keep, int(np.size(w)))) for p, w in leaves.items()}
  flat = jnp.concatenate([jnp.abs(w).ravel().astype(jnp.float32) for w in leaves.values()])
  t = _kth_largest(flat, keep_count(keep, int(flat.size)))
  return {p: t for p in leaves}


def dynamic_masks(params, keep: Amount, per_layer: bool = False,
                  select: Callable[[str, Any], bool] = is_kernel) -> Masks:
  """The masks of the current weights: m = |w| ≥ t (``dynamic_thresholds``); traceable.

  Args:
    params, keep, per_layer, select: as in ``dynamic_thresholds``.

  Returns:
    {leaf path: bool array shaped like the leaf} for every selected leaf.
  """
  leaves = leaves_by_path(params)
  thresholds = dynamic_thresholds(params, keep, per_layer, select)
  return {p: jnp.abs(leaves[p]).astype(t.dtype) >= t for p, t in thresholds.items()}


def dynamic_prune(params, keep: Amount, per_layer: bool = False, select: Callable[[str, Any], bool] = is_kernel):
  """params with ŵ = w + stop_gradient(w ⊙ m − w) on every selected leaf: the forward sees w ⊙ m, the gradient
  reaches every w unchanged (straight-through; see the module doc). Pure and traceable.

  Args:
    params, keep, per_layer, select: as in ``dynamic_thresholds``.

  Returns:
    A pytree like ``params``; unselected leaves unchanged.
  """
  masks = dynamic_masks(params, keep, per_layer, select)

  def masked(path, w):
    if path not in masks:
      return w
    return w + jax.lax.stop_gradient(jnp.where(masks[path], w, jnp.zeros_like(w)) - w)

  return map_with_path(masked, params)


@dataclasses.dataclass(frozen=True)
class MaskedApply:
  """``apply_fn`` with ``dynamic_prune`` applied to ``variables['params']`` first: a drop-in apply function for a
  train state (equal for equal arguments, so a jitted step sees one static function). ``apply_fn`` is the model's
  ``apply(variables, *args, **kwargs)``; ``keep``, ``per_layer`` and ``select`` are as in ``dynamic_thresholds``.
  """
  apply_fn: Callable
  keep: Amount
  per_layer: bool = False
  select: Callable[[str, Any], bool] = is_kernel

  def __call__(self, variables, *args, **kwargs):
    """``apply_fn({**variables, 'params': dynamic_prune(variables['params'], ...)}, *args, **kwargs)``."""
    params = dynamic_prune(variables["params"], self.keep, self.per_layer, self.select)
    return self.apply_fn({**variables, "params": params}, *args, **kwargs)


__all__ = ["keep_count", "dynamic_thresholds", "dynamic_masks", "dynamic_prune", "MaskedApply"]
