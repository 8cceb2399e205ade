"""SVD rank pruning as a pure pytree transformation, and the optimizer-state surgery that follows it.

A ``Strategy`` decides, per SVD layer, how many singular directions k to keep (from |s| sorted descending);
``Floors`` bound k from below; ``prune`` slices U, s, V to the kept directions and returns new params, the new
ranks (the architecture as data) and a report.

  count:     k = r − prune_by
  threshold: k = #{|s_i| ≥ t}, t = threshold (absolute) or threshold·max|s| (relative)
  ratio:     k = ceil(r · (1 − reduce_by))
  energy:    smallest k with Σ_{i≤k} s_i² ≥ (1 − e)·Σ_i s_i²  (energy_rule 'smallest_k'; the official code's
             rules 'official_cifar' / 'official_imagenet' keep every s tied with the last kept one, see
             ``keep_count_by_energy``)
  budget:    'energy' with one global e, bisected so the model has ≤ dense MACs / macs_reduction, the rest of the
             budget filled direction by direction (``budget``)
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
from collections.abc import Callable, Mapping
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax.core.meta import AxisMetadata

from jaxsvd.core.structure import iter_svd_layers, unboxed
from jaxsvd.core.tree import replace_nodes
from jaxsvd.core.validate import FromConfig, check_choice, check_in_range, check_min_int, check_nonnegative
from jaxsvd.pruning import budget
from jaxsvd.pruning.masks import round_up

STRATEGIES = ("count", "threshold", "ratio", "energy")  # per-layer rules
GLOBAL_STRATEGIES = ("budget",)  # one decision over all layers (needs the model's MACs: ``prune(..., macs=)``)
THRESHOLD_MODES = ("absolute", "relative")
ENERGY_RULES = ("smallest_k", "official_cifar", "official_imagenet")


@dataclasses.dataclass(frozen=True)
class Strategy(FromConfig):
  """How many directions each SVD layer keeps. Config fields: strategy, energy, prune_by, threshold, ...

  ``name`` picks the rule of the module doc ('count' | 'threshold' | 'ratio' | 'energy'); the other fields are
  the rules' parameters, each used by its rule only. Construction raises ValueError on an unknown name or
  threshold_mode, energy ∉ (0, 1), reduce_by ∉ [0, 1), prune_by < 0 or threshold < 0.
  """
  name: str = "energy"
  energy: float = 0.1  # e: fraction of Σ s² that may be dropped
  prune_by: int = 1
  threshold: float = 1e-3
  threshold_mode: str = "absolute"
  reduce_by: float = 0.1
  macs_reduction: float = 2.0  # 'budget': the pruned model has ≤ dense MACs / macs_reduction
  energy_rule: str = "smallest_k"  # | 'official_cifar' | 'official_imagenet' (ties kept; e = 0 allowed)
  config_aliases: ClassVar[dict] = {"strategy": "name"}  # the config's `strategy` field is the name

  def __post_init__(self):
    check_choice("strategy", self.name, STRATEGIES + GLOBAL_STRATEGIES)
    check_choice("threshold_mode", self.threshold_mode, THRESHOLD_MODES)
    check_choice("energy_rule", self.energy_rule, ENERGY_RULES)
    official = self.energy_rule != "smallest_k"
    check_in_range("energy", self.energy, 0.0, 1.0, low_closed=official, high_closed=False)
    check_in_range("reduce_by", self.reduce_by, 0.0, 1.0, low_closed=True, high_closed=False)
    check_min_int("prune_by", self.prune_by, 0)
    check_nonnegative("threshold", self.threshold)
    if not isinstance(self.macs_reduction, (int, float)) or not self.macs_reduction >= 1.0:
      raise ValueError(f"macs_reduction must be a number >= 1, got {self.macs_reduction!r}")


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


# ---- strategies: sorted |s| (descending, float64 numpy) -> number of directions to keep ----

def keep_count_by_count(s_sorted: np.ndarray, strategy: Strategy) -> int:
  """The 'count' rule: k = r − prune_by.

  Args:
    s_sorted: |s| sorted descending.
    strategy: supplies ``prune_by``.

  Returns:
    r − prune_by (may be ≤ 0; ``Floors.apply`` raises it).
  """
  return len(s_sorted) - strategy.prune_by


def keep_count_by_threshold(s_sorted: np.ndarray, strategy: Strategy) -> int:
  """The 'threshold' rule: k = #{i : |s_i| ≥ t}.

  Args:
    s_sorted: |s| sorted descending.
    strategy: supplies ``threshold`` and ``threshold_mode``.

  Returns:
    The count, with t = threshold ('absolute', or empty s) or t = threshold · max|s| ('relative').
  """
  relative = strategy.threshold_mode == "relative" and len(s_sorted)
  t = strategy.threshold * (s_sorted[0] if relative else 1.0)
  return int(np.sum(s_sorted >= t))


def keep_count_by_ratio(s_sorted: np.ndarray, strategy: Strategy) -> int:
  """The 'ratio' rule: k = ceil(r · (1 − reduce_by)).

  Args:
    s_sorted: |s| sorted descending (only its length r is used).
    strategy: supplies ``reduce_by``.

  Returns:
    ceil(r · (1 − reduce_by)), with a 1e-9 tolerance against float error.
  """
  return math.ceil(len(s_sorted) * (1.0 - strategy.reduce_by) - 1e-9)


def keep_count_by_energy(s_sorted: np.ndarray, strategy: Strategy) -> int:
  """The 'energy' rule, e = ``strategy.energy``, E_k = Σ_{i≤k} s_i², E = E_r:

    smallest_k:        the smallest k with E_k ≥ (1 − e)·E (1e-12 relative tolerance);
    official_cifar:    the official CIFAR code: k₀ = the smallest k with E_k / E ≥ 1 − e, threshold t = s_{k₀}
                       (the last kept), keep every s with |s| ≥ t (ties at t are kept: its mask prunes |s| < t);
    official_imagenet: the official ImageNet code: k₀ = the smallest k with E_k / E > 1 − e, then as above;
                       e = 0 gives t = 0, so nothing is pruned.

  Args:
    s_sorted: |s| sorted descending.
    strategy: supplies ``energy`` and ``energy_rule``.

  Returns:
    That k; 0 if s is empty or all zero.
  """
  cumulative = np.cumsum(s_sorted**2)
  if len(cumulative) == 0 or cumulative[-1] <= 0:
    return 0
  rule, e = strategy.energy_rule, strategy.energy
  if rule == "smallest_k":
    return int(np.argmax(cumulative >= (1.0 - e) * cumulative[-1] * (1 - 1e-12))) + 1
  if rule == "official_imagenet" and e == 0:
    return len(s_sorted)
  fraction = cumulative / cumulative[-1]
  reached = fraction > 1.0 - e if rule == "official_imagenet" else fraction >= 1.0 - e
  k0 = int(np.argmax(reached)) + 1 if reached.any() else len(s_sorted)
  return int(np.sum(s_sorted >= s_sorted[k0 - 1]))


STRATEGY_FNS: dict[str, Callable[[np.ndarray, Strategy], int]] = {
    "count": keep_count_by_count, "threshold": keep_count_by_threshold,
    "ratio": keep_count_by_ratio, "energy": keep_count_by_energy}


def keep_indices(s: np.ndarray, original_rank: int, strategy: Strategy, floors: Floors = Floors()) -> np.ndarray:
  """Indices (into ``s``) of the directions kept, in descending |s| order.

  Args:
    s: a layer's singular values (host array).
    original_rank: the layer's rank at init (for ``floors.min_decay``).
    strategy: the rule giving the number k to keep from |s| sorted descending.
    floors: bounds applied to k (``Floors.apply``).

  Returns:
    The first k indices of a stable argsort of −|s| (ties: lower index first).
  """
  if strategy.name in GLOBAL_STRATEGIES:
    raise ValueError(f"strategy={strategy.name!r} decides over all layers at once: use prune(..., macs=...)")
  order = np.argsort(-np.abs(s), kind="stable")
  k = floors.apply(STRATEGY_FNS[strategy.name](np.abs(s)[order], strategy), len(s), original_rank)
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
    macs: the model's MACs at given ranks and its dense MACs; needed by (only) the 'budget' strategy.
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
  counts = _budget_counts(keys, strategy, floors, original_ranks, macs) if strategy.name == "budget" else {}
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


def _budget_counts(host_s, strategy: Strategy, floors: Floors, original_ranks, macs) -> dict[str, int]:
  if macs is None:
    raise ValueError("strategy='budget' needs the model's MACs: prune(..., macs=budget.MacsCounter...)")
  if stacked := sorted(p for p, s in host_s.items() if s.ndim > 1):
    raise ValueError(f"strategy='budget' does not support stacked layers (nn.scan/nn.vmap, groups) yet: {stacked}")
  s_sorted = {p: np.sort(np.abs(s))[::-1] for p, s in host_s.items()}
  floor = lambda p, k: floors.apply(k, len(s_sorted[p]), original_ranks.get(p, len(s_sorted[p])))
  return budget.keep_counts(s_sorted, floor, macs, strategy.macs_reduction)[0]


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


__all__ = ["STRATEGIES", "GLOBAL_STRATEGIES", "THRESHOLD_MODES", "ENERGY_RULES", "Strategy", "Floors",
           "keep_count_by_count", "keep_count_by_threshold", "keep_count_by_ratio", "keep_count_by_energy",
           "STRATEGY_FNS", "keep_indices", "layer_keep_indices", "LayerReport", "PruneReport", "prune",
           "gather_last", "take_last", "slice_layer"]
