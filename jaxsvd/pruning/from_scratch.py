"""Pruning from scratch (Wang et al. 2020, "Pruning from Scratch", AAAI): the pruned architecture is found on
a *randomly initialized* network, then trained from scratch.

1. Gate search: the channels of every channel group (``model.channel_groups()``) get a gate; the weights stay
   at their random init and only the gates learn. Gates (``GATE_KINDS``):
     'bn'     the group's BatchNorm γ is the gate (Wang et al. 2020's setting; every BN of a VGG, each ResNet block's bn1:
              the residual stream's BNs stay frozen and uncounted), γ₀ = 0.5;
     'block'  a separate α after each ResNet block's bn1 (``build_model(gated=True)``), α₀ = 1.
   Penalty (``PENALTIES``), λ = ``weight``, over all gates Λ = {γ_j} with C = Σ_j C_j channels:
     'budget' Ω(Λ) = (Σ_j ‖Λ_j‖₁ / C − r)²  (drives the mean |γ| to the channel ratio r),
              ∂Ω/∂γ_i = 2·(Σ|γ|/C − r)·sign(γ_i)/C  (``budget_gradient``)
     'l1'     λ·Σ|γ| (``optim.l1_subgradient``)
2. Budget: one global threshold t on |γ|; a group keeps its channels with |γ| > t (at least one).
   ``widths_for_budget`` picks the smallest t whose architecture's MACs ≤ budget × the full MACs (binary search
   over the sorted |γ|; MACs fall monotonically as t rises).
3. The result, {conv path: width}, is data (``build_model(..., widths=)``, the checkpoint's architecture
   record); that architecture is trained from a fresh random init.

``prepare_search`` sets a model's params and optimizer up for step 1, ``search_report`` does step 2 and reports it.
``narrow`` is the uniform baseline on a record: every group's width scaled by one factor to a MACs budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsvd.core.record import Architecture
from jaxsvd.core.tree import leaves_by_path, map_with_path
from jaxsvd.core.validate import check_choice, check_in_range, check_min_int, check_nonnegative, check_positive
from jaxsvd.pruning import channels
from jaxsvd.pruning import masks as masks_lib
from jaxsvd.training.optim import l1_subgradient

GATE_KINDS = ("bn", "block")
PENALTIES = ("budget", "l1")


def gate_paths(groups: Sequence, kind: str) -> dict[str, str]:
  """{group conv path: path of its gate leaf} for gate kind 'bn' (the norm's scale) or 'block' (the α param).

  Args:
    groups: the model's ``ChannelGroup`` list.
    kind: one of ``GATE_KINDS``.

  Returns:
    The gate leaf of every group.

  Raises:
    ValueError: on an unknown kind, or 'block' gates on a model built without them.
  """
  check_choice("from_scratch.gates", kind, GATE_KINDS)
  if kind == "bn":
    return {g.conv: f"{g.norm}/scale" for g in groups}
  if missing := [g.conv for g in groups if g.gate is None]:
    raise ValueError(f"from_scratch.gates='block' needs gated blocks (a ResNet built with gated=True); "
                     f"{missing[:3]} have none")
  return {g.conv: g.gate for g in groups}


def init_gates(params, paths: Sequence[str], value: float):
  """``params`` with every gate leaf in ``paths`` set to ``value`` (e.g. γ₀ = 0.5).

  Args:
    params: the params pytree.
    paths: the '/'-joined paths of the gate leaves (e.g. ``'stage1_block0/gate'``).
    value: the value every entry of those leaves gets.

  Returns:
    A new pytree of ``params``' structure: leaves at ``paths`` replaced by ``jnp.full_like(leaf, value)`` (same
    shape and dtype), the others unchanged.
  """
  paths = set(paths)
  return map_with_path(lambda p, leaf: jnp.full_like(leaf, value) if p in paths else leaf, params)


def budget_loss(gate_values: Sequence, ratio: float):
  """Ω(Λ) = (Σ_j ‖Λ_j‖₁ / Σ_j C_j − r)², the budget loss of Wang et al. (2020).

  Args:
    gate_values: the gate arrays Λ_j (one per group).
    ratio: r, the target mean |γ| (the fraction of channels to keep).

  Returns:
    The scalar loss.
  """
  total = sum(jnp.sum(jnp.abs(g)) for g in gate_values)
  channels = sum(int(np.size(g)) for g in gate_values)
  return (total / channels - ratio) ** 2


def budget_gradient(weight: float, paths: Sequence[str], ratio: float) -> optax.GradientTransformation:
  """g ← g + λ·∂Ω/∂γ on the gate leaves, with ∂Ω/∂γ_i = 2·(Σ|γ|/C − r)·sign(γ_i)/C (``budget_loss``).

  Args:
    weight: λ.
    paths: the gate leaves' paths.
    ratio: r.

  Returns:
    A stateless optax transform; its ``update`` needs ``params``.
  """
  paths = set(paths)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("budget_gradient needs params in update()")
    gates = {p: leaf for p, leaf in leaves_by_path(params).items() if p in paths}
    channels = sum(int(np.size(g)) for g in gates.values())
    excess = sum(jnp.sum(jnp.abs(g)) for g in gates.values()) / channels - ratio
    scale = weight * 2.0 * excess / channels
    add = lambda p, g, w: g + (scale * jnp.sign(w)).astype(g.dtype) if p in paths else g  # noqa: E731
    return map_with_path(add, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def gate_optimizer(paths: Sequence[str], learning_rate: float, weight: float, penalty: str = "l1",
                   ratio: float = 0.5) -> optax.GradientTransformation:
  """The penalty's gradient on the gates, Adam on the gates, zero updates for every other param (frozen weights).

  Args:
    paths: the gate leaves' paths (``gate_paths(...).values()``).
    learning_rate: Adam's learning rate on the gates.
    weight: λ of the penalty.
    penalty: 'budget' (Ω, see the module doc) or 'l1' (λ·Σ|γ|).
    ratio: r of the budget loss.

  Returns:
    The optax transform.

  Raises:
    ValueError: on a negative learning rate or weight, an unknown penalty, or r outside (0, 1].
  """
  check_nonnegative("from_scratch.weight", weight)
  check_positive("from_scratch.learning_rate", learning_rate)
  check_choice("from_scratch.penalty", penalty, PENALTIES)
  check_in_range("from_scratch.ratio", ratio, 0.0, 1.0, low_closed=False, high_closed=True)
  masks = {p: True for p in paths}
  grad = budget_gradient(weight, paths, ratio) if penalty == "budget" else l1_subgradient(weight, masks)
  return optax.chain(grad, optax.multi_transform({"gate": optax.adam(learning_rate), "frozen": optax.set_to_zero()},
                                                 masks_lib.label_fn(masks, "gate", "frozen")))


def gates(params, paths: Mapping[str, str]) -> dict[str, np.ndarray]:
  """{group conv path: |gate|} (float64 numpy) for the gate leaves ``paths`` ({conv path: leaf path}).

  Args:
    params: the searched model's params.
    paths: from ``gate_paths``.

  Returns:
    The keys of ``widths``, each with its gate magnitudes.
  """
  leaves = leaves_by_path(params)
  return {conv: np.abs(np.asarray(jax.device_get(leaves[p]), np.float64)) for conv, p in paths.items()}


def widths_at(gate_values: Mapping[str, np.ndarray], threshold: float, multiple: int = 1) -> dict[str, int]:
  """The width of every group: its gates above ``threshold``, at least 1, rounded up to ``multiple``.

  Args:
    gate_values: {conv path: |γ|}, e.g. from ``gates``.
    threshold: the global threshold t.
    multiple: m; each width is rounded up to a multiple of m (never above the group's size).

  Returns:
    {conv path: min(C, m·ceil(max(1, #{j : |γ_j| > t}) / m))}, C the group's channels.
  """
  return {path: masks_lib.round_up(max(1, int(np.sum(g > threshold))), g.size, multiple)
          for path, g in gate_values.items()}


def widths_for_budget(gate_values: Mapping[str, np.ndarray], macs_of: Callable[[dict[str, int]], int],
                      budget: float, multiple: int = 1) -> dict[str, int]:
  """The widest architecture (one global gate threshold) whose MACs ≤ ``budget`` × the unpruned MACs.

  ``macs_of(widths)`` gives an architecture's MACs (e.g. via ``flops.count``). Raises if even one channel
  per block exceeds the budget.

  Args:
    gate_values: {block path: |α|}, e.g. from ``gates``.
    macs_of: ``macs_of({block path: width}) -> MACs``; assumed non-increasing as widths shrink.
    budget: the fraction of the unpruned MACs allowed, in (0, 1].
    multiple: every width rounded up to a multiple of this (``widths_at``); the search accounts for it.

  Returns:
    ``widths_at(gate_values, t, multiple)`` for the smallest t (−inf or one of the |α| values) with
    MACs ≤ budget · MACs(all gates kept), found by binary search.

  Raises:
    ValueError: if ``budget`` ∉ (0, 1], there are no gates, or one channel per block exceeds the budget.
  """
  check_in_range("from_scratch.budget", budget, 0.0, 1.0, low_closed=False, high_closed=True)
  check_min_int("from_scratch.channel_multiple", multiple, 1)
  if not gate_values:
    raise ValueError("from_scratch: the params have no gates (build the model with gated=True)")
  full = macs_of({p: g.size for p, g in gate_values.items()})
  limit = budget * full
  # Candidate thresholds: below every gate (keep all), then each gate value (drop it and everything smaller).
  candidates = np.concatenate([[-np.inf], np.unique(np.concatenate(list(gate_values.values())))])
  lo, hi = 0, len(candidates) - 1
  widths = lambda t: widths_at(gate_values, t, multiple)  # noqa: E731
  if macs_of(widths(candidates[hi])) > limit:
    raise ValueError(f"from_scratch.budget={budget}: even one channel per block needs more MACs")
  while lo < hi:  # smallest index whose architecture fits
    mid = (lo + hi) // 2
    if macs_of(widths(candidates[mid])) <= limit:
      hi = mid
    else:
      lo = mid + 1
  return widths(candidates[lo])


def uniform_widths_for_budget(full_widths: Mapping[str, int], macs_of: Callable[[dict[str, int]], int],
                              budget: float, multiple: int = 1) -> dict[str, int]:
  """The widest *uniformly* narrower architecture: one width factor f for every group, width = ⌈f·C⌉ (at least 1,
  rounded up to ``multiple``), with MACs ≤ ``budget`` × the full MACs.

  ``widths_for_budget`` on gates |γ_j| = j/C (j = 1..C) per group: a threshold t keeps #{j : j/C > t} = ⌈(1 − t)·C⌉
  channels of every group, so the bisection over thresholds is a bisection over the common factor f = 1 − t.

  Args:
    full_widths: {conv path: C}, the full width of every channel group.
    macs_of: ``macs_of({conv path: width}) -> MACs``, non-increasing as widths shrink.
    budget: the fraction of the full MACs allowed, in (0, 1].
    multiple: every width rounded up to a multiple of this (never above C).

  Returns:
    {conv path: width} of the largest factor that fits.

  Raises:
    ValueError: as ``widths_for_budget``.
  """
  gate_values = {path: np.arange(c, 0, -1, dtype=np.float64) / c for path, c in full_widths.items()}
  return widths_for_budget(gate_values, macs_of, budget, multiple)


def prepare_search(params, groups: Sequence, kind: str, init: float, learning_rate: float, weight: float,
                   penalty: str = "budget", ratio: float = 0.5) -> tuple[dict, optax.GradientTransformation, dict]:
  """The gate search's start: ``params`` with every gate at ``init``, the gate optimizer, the gate paths.

  Args:
    params: the (randomly initialized) model's params; a 'block' search needs a model built with ``gated=True``.
    groups: the model's ``ChannelGroup`` list.
    kind: the gate kind, one of ``GATE_KINDS``.
    init: the gates' initial value (γ₀).
    learning_rate, weight, penalty, ratio: as in ``gate_optimizer``.

  Returns:
    (params with the gates set (``init_gates``), ``gate_optimizer(...)`` (Adam on the gates, the rest frozen),
    {group conv path: gate leaf path} (``gate_paths``, for ``gates`` after the search)).

  Raises:
    ValueError: as ``gate_paths`` and ``gate_optimizer``.
  """
  paths = gate_paths(groups, kind)
  tx = gate_optimizer(paths.values(), learning_rate, weight, penalty, ratio)
  return init_gates(params, paths.values(), init), tx, paths


def search_report(gate_values: Mapping[str, np.ndarray], macs_of: Callable[[dict[str, int]], int], budget: float,
                  multiple: int = 1) -> dict:
  """``widths_for_budget`` and what it chose, as JSON-able data (the experiments' ``widths.json``).

  Args:
    gate_values, macs_of, budget, multiple: as in ``widths_for_budget``.

  Returns:
    {'widths': {conv path: width}, 'macs_full', 'macs_pruned', 'budget', 'channels_full', 'channels_pruned'}:
    MACs and group channels with every gate kept and at the chosen widths.

  Raises:
    ValueError: as ``widths_for_budget``.
  """
  widths = widths_for_budget(gate_values, macs_of, budget, multiple)
  return {"widths": widths, "macs_full": macs_of({p: g.size for p, g in gate_values.items()}),
          "macs_pruned": macs_of(widths), "budget": budget,
          "channels_full": sum(int(g.size) for g in gate_values.values()), "channels_pruned": sum(widths.values())}


def narrow(architecture: Architecture, macs: Callable[[Architecture], int], macs_reduction: float,
           multiple: int = 1) -> tuple[Architecture, dict]:
  """The record uniformly narrower: ``widths`` from one factor f for every channel group (width ⌈f·C⌉, rounded up to
  ``multiple``), f the largest with MACs ≤ the record's MACs / ``macs_reduction`` (``uniform_widths_for_budget``).

  Args:
    architecture: a zoo model's record (C: its groups' widths now, ``channels.group_widths``).
    macs: ``macs(record) -> MACs`` of a record's model (e.g. ``jaxsvd.linen.flops.count`` of ``build_model()``).
    macs_reduction: R ≥ 1.
    multiple: every width rounded up to a multiple of this (never above C; counted in the search).

  Returns:
    (the record with ``widths`` set, report {'channels_full', 'channels_narrow', 'macs_full', 'macs_narrow'}).

  Raises:
    ValueError: one line naming ``narrow.macs_reduction`` if even one channel per group needs more MACs.
  """
  full = channels.group_widths(architecture)
  macs_of = lambda widths: macs(architecture.replace(widths={**(architecture.widths or {}), **widths}))  # noqa: E731
  try:
    widths = uniform_widths_for_budget(full, macs_of, 1.0 / macs_reduction, multiple)
  except ValueError:
    raise ValueError(f"narrow.macs_reduction={macs_reduction}: even one channel per group needs more MACs") from None
  narrowed = architecture.replace(widths={**(architecture.widths or {}), **widths})
  report = {"channels_full": sum(full.values()), "channels_narrow": sum(widths.values()),
            "macs_full": macs_of(full), "macs_narrow": macs(narrowed)}
  return narrowed, report


__all__ = ["GATE_KINDS", "PENALTIES", "gate_paths", "init_gates", "budget_loss", "budget_gradient", "gate_optimizer",
           "gates", "widths_at", "widths_for_budget", "uniform_widths_for_budget", "prepare_search", "search_report",
           "narrow"]
