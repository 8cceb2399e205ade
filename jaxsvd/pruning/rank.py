"""SVD rank pruning as a pure pytree transformation, and the optimizer-state surgery that follows it.

A ``Strategy`` decides how many singular directions k each SVD layer keeps (``jaxsvd.pruning.strategies``: one
class per strategy, registered by name — count, threshold, ratio, energy, budget — each layer's k from its |s|
sorted descending, or one decision over all layers for a global strategy such as 'budget'); ``Floors`` bound k
from below; ``prune`` slices U, s, V to the kept directions and returns new params, the new ranks (the
architecture as data) and a report.

  floors:    k ≥ min_rank ≥ 1 and k ≥ ceil(min_decay · original rank), then k rounded up to a multiple of
             rank_multiple (e.g. 8 or 16: vector/tile widths); k ≤ r

A stacked layer (s of shape (*L, r): ``nn.scan``/``nn.vmap`` layers, grouped convs) keeps one rank for all its
slices, since a scan needs equal shapes: k = max over slices of the k each slice would keep on its own (floors
applied per slice), and each slice keeps its own k largest |s| directions (the kept indices differ per slice).
So no slice loses more than the strategy allows; slices that would keep fewer keep a few more directions.

After pruning, the optimizer state is re-initialized or sliced: ``jaxsvd.pruning.opt_state``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax.core.meta import AxisMetadata

from jaxsvd.core.structure import iter_svd_layers, unboxed
from jaxsvd.core.tree import replace_nodes
from jaxsvd.core.validate import FromConfig, check_in_range, check_min_int
from jaxsvd.pruning import budget
from jaxsvd.pruning.masks import round_up
from jaxsvd.pruning.strategies import Strategy

@dataclasses.dataclass(frozen=True)
class Floors(FromConfig):
  """Lower bounds on every kept rank: k ≥ min_rank and k ≥ ceil(min_decay · original rank).

  ``rank_multiple`` m then rounds k up to a multiple of m (never above the current rank).
  Construction raises ValueError unless min_rank and rank_multiple are ints ≥ 1 and min_decay ∈ [0, 1].
  """
  min_rank: int = 1
  min_decay: float = 0.0
  rank_multiple: int = 1

  def __post_init__(self):
    check_min_int("min_rank", self.min_rank, 1)
    check_in_range("min_decay", self.min_decay, 0.0, 1.0, low_closed=True, high_closed=True)
    check_min_int("rank_multiple", self.rank_multiple, 1)

  def apply(self, k: int, rank: int, original_rank: int) -> int:
    """k raised to the floors, at most the current ``rank``.

    Args:
      k: the number of directions a strategy keeps.
      rank: the layer's current rank r.
      original_rank: its rank at init (for ``min_decay``).

    Returns:
      min(r, m·ceil(max(k, min_rank, ceil(min_decay · original_rank), 1) / m)), m = rank_multiple.
    """
    floor = max(self.min_rank, math.ceil(self.min_decay * original_rank - 1e-9))
    k = max(k, floor, 1)
    return round_up(k, rank, self.rank_multiple)


def keep_indices(s: np.ndarray, original_rank: int, strategy: Strategy, floors: Floors = Floors()) -> np.ndarray:
  """Indices (into ``s``) of the directions kept, in descending |s| order.

  Args:
    s: a layer's singular values (host array).
    original_rank: the layer's rank at init (for ``floors.min_decay``).
    strategy: a per-layer strategy (its ``keep_count`` gives k from |s| sorted descending).
    floors: bounds applied to k (``Floors.apply``).

  Returns:
    The first k indices of a stable argsort of −|s| (ties: lower index first).
  """
  order = np.argsort(-np.abs(s), kind="stable")
  k = floors.apply(strategy.keep_count(np.abs(s)[order]), len(s), original_rank)
  return order[:k]


def layer_keep_indices(s: np.ndarray, original_rank: int, strategy: Strategy, floors: Floors = Floors()) -> np.ndarray:
  """``keep_indices`` of a plain (r,) s, or per slice of a stacked (*L, r) s at one shared k (see module doc).

  Args:
    s: a layer's singular values (host array), (r,) or (*L, r).
    original_rank: the layer's rank at init (for ``floors.min_decay``).
    strategy: the rule giving each slice's k.
    floors: bounds applied to each slice's k.

  Returns:
    (k,) indices, or (*L, k) indices per slice (each slice's k largest |s|, in descending order), with k the max
    over slices of each slice's kept count.
  """
  if s.ndim == 1:
    return keep_indices(s, original_rank, strategy, floors)
  rows = s.reshape(-1, s.shape[-1])
  k = max(len(keep_indices(row, original_rank, strategy, floors)) for row in rows)
  orders = np.argsort(-np.abs(rows), axis=-1, kind="stable")
  return orders[:, :k].reshape(*s.shape[:-1], k)


@dataclasses.dataclass(frozen=True)
class LayerReport:
  """One SVD layer's outcome of ``prune``: its rank before and after, and kept_energy = Σ_kept s_i² / Σ s_i²
  (1.0 when Σ s_i² = 0)."""
  old_rank: int
  new_rank: int
  kept_energy: float  # Σ kept s² / Σ s²


@dataclasses.dataclass(frozen=True)
class PruneReport:
  """What ``prune`` did: ``layers`` {layer path: LayerReport} and ``keep`` {layer path: indices into the old s
  of the kept directions, in descending |s| order} (what ``slice_opt_state`` slices by)."""
  layers: dict[str, LayerReport]
  keep: dict[str, np.ndarray]  # per layer: indices kept (into the old s)

  @property
  def changed(self) -> bool:
    """Whether any layer's rank changed."""
    return any(r.old_rank != r.new_rank for r in self.layers.values())

  @property
  def ranks(self) -> dict[str, int]:
    """{layer path: new rank}."""
    return {p: r.new_rank for p, r in self.layers.items()}

  def summary(self) -> str:
    """One line: total rank before -> after, over how many SVD layers."""
    old = sum(r.old_rank for r in self.layers.values())
    new = sum(r.new_rank for r in self.layers.values())
    return f"pruned total rank {old} -> {new} over {len(self.layers)} SVD layers"


def prune(params, strategy: Strategy, floors: Floors = Floors(), original_ranks: Mapping[str, int] | None = None,
          macs: budget.MacsCounter | None = None, importance: Mapping[str, np.ndarray] | None = None):
  """Prunes every SVD layer of ``params``. Pure: ``params`` is not modified.

  Args:
    params: a params pytree with SVD layers ({'U', 's', 'V'} nodes, found by structure).
    strategy: how many directions each layer keeps.
    floors: lower bounds on the kept ranks.
    original_ranks: {layer path: rank at init} for ``floors.min_decay`` (default: the current ranks).
    macs: the model's MACs at given ranks and its dense MACs; needed by a strategy with ``needs_macs`` ('budget').
    importance: {layer path: per-direction importance ≥ 0, shaped like s}, e.g. the output energy
      s_i²·v_iᵀCv_i of ``jaxsvd.core.calibration.output_importance`` (data-aware pruning): for those layers every
      rule reads √importance in place of |s| (the 'energy' and 'budget' rules then keep output energy, and the
      kept directions are the most important ones); other layers use |s|.

  Returns:
    (new_params, new_ranks {path: rank}, PruneReport). In new_params each SVD layer's U, s, V hold only the
    kept directions, reordered by descending |s| (the layer's function is unchanged by the reordering).

  Raises:
    ValueError: naming the layer if any s holds NaN/Inf (nothing is pruned then); for 'budget' without ``macs`` or
      with a target the floors cannot meet.
  """
  layers = dict(iter_svd_layers(params))
  host_s = {path: np.asarray(jax.device_get(unboxed(node["s"])), np.float64) for path, node in layers.items()}
  for path, s in host_s.items():
    if not np.all(np.isfinite(s)):
      raise ValueError(f"cannot prune: singular values of layer {path!r} contain NaN/Inf")
  original_ranks = original_ranks or {}
  keys = {p: np.sqrt(np.maximum(np.asarray((importance or {}).get(p, s**2), np.float64), 0.0))
          for p, s in host_s.items()}
  counts = _global_counts(keys, strategy, floors, original_ranks, macs) if strategy.is_global else {}
  keep, reports, new_nodes = {}, {}, {}
  for path, node in layers.items():
    s, key = host_s[path], keys[path]
    if path in counts:
      idx = np.argsort(-key, kind="stable")[:counts[path]]
    else:
      idx = layer_keep_indices(key, original_ranks.get(path, s.shape[-1]), strategy, floors)
    total, kept = float(np.sum(s**2)), float(np.sum(gather_last(s, idx) ** 2))
    keep[path] = idx
    reports[path] = LayerReport(s.shape[-1], idx.shape[-1], kept / total if total > 0 else 1.0)
    new_nodes[path] = slice_layer(node, idx)
  report = PruneReport(reports, keep)
  return replace_nodes(params, new_nodes), report.ranks, report


def _global_counts(keys, strategy: Strategy, floors: Floors, original_ranks, macs) -> dict[str, int]:
  """{path: k} of a global strategy, from each layer's keys sorted descending and the floors."""
  s_sorted = {p: -np.sort(-np.abs(s), axis=-1) for p, s in keys.items()}
  floor = lambda p, k: floors.apply(k, s_sorted[p].shape[-1], original_ranks.get(p, s_sorted[p].shape[-1]))
  return strategy.keep_counts(s_sorted, floor, macs)


def gather_last(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
  """x[..., idx] for (k,) idx; per slice for (*L, k) idx and x of shape (*L, r) or (*L, m, r).

  Args:
    x: a host array whose last axis is the rank axis: (..., r), or (*L, r) / (*L, m, r) for a stacked ``idx``.
    idx: the indices to keep along the last axis: (k,), or (*L, k), one row per slice.

  Returns:
    ``x`` with its last axis gathered at ``idx``: (..., k), or (*L, k) / (*L, m, k).
  """
  if idx.ndim == 1:
    return np.take(x, idx, axis=-1)
  return np.take_along_axis(x, idx if x.ndim == idx.ndim else idx[..., None, :], axis=-1)


def take_last(x, idx: np.ndarray):
  """x[..., idx] (per slice for a stacked idx), gathered on the host shard by shard: eager device gathers would
  compile once per new shape, and no process ever holds more than its own shards. A ``jax.Array`` keeps its
  sharding (the rank axis must not be partitioned); a boxed leaf (``nn.Partitioned``) stays boxed.

  Args:
    x: a U, s or V leaf (an array, or one in a flax ``AxisMetadata`` box), rank axis last.
    idx: the indices to keep, as for ``gather_last``: (k,), or (*L, k) per slice.

  Returns:
    The gathered ``jax.Array`` (``gather_last``'s shape) with ``x``'s sharding, in the same kind of box as ``x``.

  Raises:
    ValueError: if ``x``'s rank axis is partitioned over devices.
  """
  value = unboxed(x)
  if isinstance(value, jax.Array):
    value = _take_last_by_shard(value, idx)
  else:
    value = jnp.asarray(gather_last(np.asarray(value), idx))
  return x.replace_boxed(value) if isinstance(x, AxisMetadata) else value


def _take_last_by_shard(x: jax.Array, idx: np.ndarray) -> jax.Array:
  """``take_last`` of a device array: each addressable shard gathered on the host on its own, same sharding."""
  if x.sharding.shard_shape(x.shape)[-1] != x.shape[-1]:
    raise ValueError(f"cannot prune a factor of shape {x.shape} whose rank axis is partitioned ({x.sharding}); "
                     f"map the logical axis 'rank' to None")
  shards = [jax.device_put(gather_last(np.asarray(shard.data), _shard_rows(idx, shard.index)), shard.device)
            for shard in x.addressable_shards]
  return jax.make_array_from_single_device_arrays((*x.shape[:-1], idx.shape[-1]), x.sharding, shards)


def _shard_rows(idx: np.ndarray, index: tuple) -> np.ndarray:
  """The rows of a stacked (*L, k) ``idx`` that belong to a shard at ``index`` (its slices of the stack axes)."""
  if idx.ndim == 1:
    return idx
  return idx[tuple(index[:idx.ndim - 1])]


def slice_layer(node: Mapping, idx: np.ndarray) -> dict:
  """An SVD layer's params keeping only the directions ``idx`` of U, s and V (other leaves as they are).

  Args:
    node: an SVD layer's params {'U', 's', 'V', ...}.
    idx: indices of the directions to keep, in the order wanted: (k,), or (*L, k) per slice of a stacked layer.

  Returns:
    A new dict with U[..., idx], s[..., idx], V[..., idx] (gathered on the host, per slice when stacked).
  """
  return {**node, "U": take_last(node["U"], idx), "s": take_last(node["s"], idx), "V": take_last(node["V"], idx)}


__all__ = ["Floors", "keep_indices", "layer_keep_indices", "LayerReport", "PruneReport", "prune",
           "gather_last", "take_last", "slice_layer"]
