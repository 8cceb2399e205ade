"""Online low-rank pruning as pure pytree transformations.

Strategies decide, per SVD layer, how many singular directions to keep (from |s| sorted
descending); ``prune`` slices U, s, V accordingly and returns new params, new ranks and a report.
Floors on every strategy: k ≥ min_rank ≥ 1 and k ≥ ceil(min_decay · original rank).

  count:     k = r − prune_by
  threshold: k = #{|s_i| ≥ t}, t = threshold (absolute) or threshold·max|s| (relative)
  ratio:     k = ceil(r · (1 − reduce_by))
  energy:    smallest k with Σ_{i≤k} s_i² ≥ (1 − e)·Σ_i s_i²
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.ranks import iter_svd_layers, replace_nodes
from jaxsvd.validate import check_choice, check_in_range, check_min_int, check_nonnegative, dataclass_from_config

STRATEGIES = ("count", "threshold", "ratio", "energy")
THRESHOLD_MODES = ("absolute", "relative")
OPT_STATE_POLICIES = ("reinit", "slice")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  strategy: str = "energy"
  energy: float = 0.1  # e: fraction of Σ s² that may be dropped
  prune_by: int = 1
  threshold: float = 1e-3
  threshold_mode: str = "absolute"
  reduce_by: float = 0.1
  min_rank: int = 1
  min_decay: float = 0.0
  opt_state: str = "reinit"
  # Schedule (epochs, counted as completed epochs 1..num_epochs).
  prune_every: int = 1
  prune_start: int = 1
  prune_stop: int | None = None  # last epoch that may prune; default: before fine-tuning
  finetune_epochs: int = 0

  def __post_init__(self):
    check_choice("pruning.strategy", self.strategy, STRATEGIES)
    check_choice("pruning.threshold_mode", self.threshold_mode, THRESHOLD_MODES)
    check_choice("pruning.opt_state", self.opt_state, OPT_STATE_POLICIES)
    check_in_range("pruning.energy", self.energy, 0.0, 1.0, low_closed=False, high_closed=False)
    check_in_range("pruning.reduce_by", self.reduce_by, 0.0, 1.0, low_closed=True, high_closed=False)
    check_in_range("pruning.min_decay", self.min_decay, 0.0, 1.0, low_closed=True, high_closed=True)
    check_min_int("pruning.prune_by", self.prune_by, 0)
    check_min_int("pruning.min_rank", self.min_rank, 1)
    check_min_int("pruning.prune_every", self.prune_every, 1)
    check_min_int("pruning.finetune_epochs", self.finetune_epochs, 0)
    check_nonnegative("pruning.threshold", self.threshold)

  @classmethod
  def from_config(cls, cfg: Any) -> "PruneConfig":
    return dataclass_from_config(cls, cfg)


# ---- strategies: sorted |s| (descending, float64 numpy) -> number of directions to keep ----

def keep_count_by_count(s_sorted: np.ndarray, cfg: PruneConfig) -> int:
  return len(s_sorted) - cfg.prune_by


def keep_count_by_threshold(s_sorted: np.ndarray, cfg: PruneConfig) -> int:
  t = cfg.threshold * (s_sorted[0] if cfg.threshold_mode == "relative" and len(s_sorted) else 1.0)
  return int(np.sum(s_sorted >= t))


def keep_count_by_ratio(s_sorted: np.ndarray, cfg: PruneConfig) -> int:
  return math.ceil(len(s_sorted) * (1.0 - cfg.reduce_by) - 1e-9)


def keep_count_by_energy(s_sorted: np.ndarray, cfg: PruneConfig) -> int:
  cumulative = np.cumsum(s_sorted**2)
  if len(cumulative) == 0 or cumulative[-1] <= 0:
    return 0
  target = (1.0 - cfg.energy) * cumulative[-1]
  return int(np.argmax(cumulative >= target * (1 - 1e-12))) + 1


STRATEGY_FNS: dict[str, Callable[[np.ndarray, PruneConfig], int]] = {
    "count": keep_count_by_count, "threshold": keep_count_by_threshold,
    "ratio": keep_count_by_ratio, "energy": keep_count_by_energy}


def apply_floors(k: int, rank: int, original_rank: int, cfg: PruneConfig) -> int:
  floor = max(cfg.min_rank, math.ceil(cfg.min_decay * original_rank - 1e-9))
  return int(min(rank, max(k, floor, 1)))


def keep_indices(s: np.ndarray, original_rank: int, cfg: PruneConfig) -> np.ndarray:
  """Indices of the kept directions, in descending |s| order."""
  order = np.argsort(-np.abs(s), kind="stable")
  k = apply_floors(STRATEGY_FNS[cfg.strategy](np.abs(s)[order], cfg), len(s), original_rank, cfg)
  return order[:k]


@dataclasses.dataclass(frozen=True)
class LayerReport:
  old_rank: int
  new_rank: int
  kept_energy: float  # Σ kept s² / Σ s²


@dataclasses.dataclass(frozen=True)
class PruneReport:
  layers: dict[str, LayerReport]
  keep: dict[str, np.ndarray]  # per layer: indices kept (into the old s)

  @property
  def changed(self) -> bool:
    return any(r.old_rank != r.new_rank for r in self.layers.values())

  def summary(self) -> str:
    old = sum(r.old_rank for r in self.layers.values())
    new = sum(r.new_rank for r in self.layers.values())
    return f"pruned total rank {old} -> {new} over {len(self.layers)} SVD layers"


def prune(params, cfg: PruneConfig, original_ranks: Mapping[str, int] | None = None):
  """(params, cfg) -> (new_params, new_ranks, report). Pure: ``params`` is not modified.

  Raises ValueError naming the layer if any s holds NaN/Inf (nothing is pruned then).
  """
  layers = dict(iter_svd_layers(params))
  host_s = {path: np.asarray(jax.device_get(node["s"]), np.float64) for path, node in layers.items()}
  for path, s in host_s.items():
    if not np.all(np.isfinite(s)):
      raise ValueError(f"cannot prune: singular values of layer {path!r} contain NaN/Inf")
  original_ranks = original_ranks or {}
  keep, reports, new_nodes = {}, {}, {}
  for path, node in layers.items():
    s = host_s[path]
    idx = keep_indices(s, original_ranks.get(path, len(s)), cfg)
    total = float(np.sum(s**2))
    kept = float(np.sum(s[idx] ** 2)) / total if total > 0 else 1.0
    keep[path] = idx
    reports[path] = LayerReport(len(s), len(idx), kept)
    new_nodes[path] = slice_layer(node, idx)
  new_params = replace_nodes(params, new_nodes)
  return new_params, {p: r.new_rank for p, r in reports.items()}, PruneReport(reports, keep)


def _take_last(x, idx: np.ndarray) -> jax.Array:
  """x[..., idx], gathered on the host: eager device gathers would compile once per new shape."""
  return jnp.asarray(np.take(np.asarray(jax.device_get(x)), idx, axis=-1))


def slice_layer(node: Mapping, idx: np.ndarray) -> dict:
  return {**node, "U": _take_last(node["U"], idx), "s": _take_last(node["s"], idx), "V": _take_last(node["V"], idx)}


# ---- optimizer-state surgery ----

def _param_path(key_path) -> str | None:
  """The trailing run of dict keys of an optimizer-state leaf: the param it shadows."""
  names = []
  for key in reversed(key_path):
    if not isinstance(key, jax.tree_util.DictKey):
      break
    names.append(str(key.key))
  return "/".join(reversed(names)) or None


def _param_shapes(params) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {_param_path(path): tuple(np.shape(leaf)) for path, leaf in flat}


def slice_opt_state(opt_state, old_params, keep: Mapping[str, np.ndarray]):
  """Slices every optimizer-state leaf shaped like a pruned U/s/V (momenta, Adam moments).

  Leaves are matched to params by their trailing dict-key path and shape; counts and
  schedule state are left as they are.
  """
  shapes = _param_shapes(old_params)

  def surgery(key_path, leaf):
    path = _param_path(key_path)
    if path is None or "/" not in path:
      return leaf
    layer, name = path.rsplit("/", 1)
    if layer in keep and name in ("U", "s", "V") and tuple(np.shape(leaf)) == shapes.get(path):
      return _take_last(leaf, keep[layer])
    return leaf

  return jax.tree_util.tree_map_with_path(surgery, opt_state)


def reinit_opt_state(tx, new_params, old_opt_state):
  """``tx.init(new_params)`` with every non-param leaf (step counts, schedule state) kept from the old state."""
  fresh = tx.init(new_params)
  shapes = _param_shapes(new_params)

  def merge(key_path, new_leaf, old_leaf):
    path = _param_path(key_path)
    is_param_like = path in shapes and tuple(np.shape(new_leaf)) == shapes[path]
    return new_leaf if is_param_like else old_leaf

  return jax.tree_util.tree_map_with_path(merge, fresh, old_opt_state)


def surgery(tx, opt_state, old_params, new_params, report: PruneReport, policy: str):
  check_choice("pruning.opt_state", policy, OPT_STATE_POLICIES)
  if policy == "slice":
    return slice_opt_state(opt_state, old_params, report.keep)
  return reinit_opt_state(tx, new_params, opt_state)


# ---- schedule ----

def last_prune_epoch(cfg: PruneConfig, num_epochs: int) -> int:
  stop = num_epochs - cfg.finetune_epochs
  return stop if cfg.prune_stop is None else min(cfg.prune_stop, stop)


def should_prune(epoch: int, cfg: PruneConfig, num_epochs: int) -> bool:
  """Whether to prune after completing ``epoch`` (1-based)."""
  if epoch < cfg.prune_start or epoch > last_prune_epoch(cfg, num_epochs):
    return False
  return (epoch - cfg.prune_start) % cfg.prune_every == 0


def in_finetune(epoch: int, cfg: PruneConfig, num_epochs: int) -> bool:
  """Whether epoch (1-based) belongs to the final fine-tune phase (λs = 0, no pruning)."""
  return epoch > num_epochs - cfg.finetune_epochs
