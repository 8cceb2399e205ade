"""Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming").

Train with an L1 penalty on every BatchNorm scale γ (``optim`` field ``bn_l1``), then pick the channels whose
|γ| is smallest over all (prunable) norm layers, one global threshold (``channel_masks``), then fine-tune.
Masking a channel's γ and β to zero makes its BN output γ·x̂ + β exactly 0, so it carries nothing: the same
function as removing it, which ``pruning.channels.slice_channels`` then does physically (the experiment's
slimming event rebuilds the narrower model). The pruned channels are data: ``pruned_channels`` ({BN path:
[channel, ...]}) goes into the checkpoint's architecture record; ``masks_from_channels`` rebuilds masks from it
(format-1 checkpoints held slimmed channels at zero with ``masks.keep_pruned`` instead of removing them).

On a zoo model's record, slimming is ``variables, record → variables', record'``:

  group_masks(params, record, amount)         ``channel_masks`` over the norms of the record's channel groups
  budget_masks(params, record, macs, R)       the |γ| threshold bisected to ≤ dense MACs / R (``macs(record)``)
  slim(variables, record, masks)              the variables sliced to the kept channels (physically narrower),
                                              the record's new widths, pruned channels and ranks, a report
  channel_counts(record, params)              norm-layer channels before / after slimming, from the record
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import norm_layers, norm_widths, ranks, total_rank
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.core.validate import check_in_range, check_min_int
from jaxsvd.pruning import channels, from_scratch
from jaxsvd.pruning.masks import Masks, prune_smallest, round_up


def channel_masks(params, amount: float, min_channels: int = 1, norms: Sequence[str] | None = None,
                  multiple: int = 1) -> Masks:
  """Masks (on each BN's 'scale' and 'bias') pruning the fraction ``amount`` of all BN channels with the
  smallest |γ|, one threshold over all layers; every layer keeps its ``min_channels`` largest.

  k = min(round(amount · C), #unprotected) of all C channels are pruned, where each layer's ``min_channels``
  largest |γ| are protected. Ties go to the lower index (layers in ``norm_layers`` order). With ``multiple`` m > 1
  each layer's kept count is then rounded up to a multiple of m (at most its width) by keeping its largest pruned
  |γ| back, so fewer than k channels may go: widths that fill vector lanes / tensor-core tiles.

  Args:
    params: a params pytree with norm layers.
    amount: the fraction of all norm channels to prune, in [0, 1).
    min_channels: channels each layer keeps at least (int ≥ 1).
    norms: the norm layers that may lose channels (default: all; a model's prunable ones are its
      ``channel_groups()``' norms, e.g. not the residual stream of a ResNet).
    multiple: m ≥ 1; kept channels per layer rounded up to a multiple of m.

  Returns:
    {'<layer>/scale': m, '<layer>/bias': m} with m a bool (channels,) array, True = kept (one array shared by
    both keys).

  Raises:
    ValueError: if ``amount`` or ``min_channels`` is out of range, or ``params`` have no norm layers.
  """
  check_in_range("slimming.amount", amount, 0.0, 1.0, low_closed=True, high_closed=False)
  check_min_int("slimming.min_channels", min_channels, 1)
  check_min_int("slimming.channel_multiple", multiple, 1)
  layers = norm_layers(params)
  if norms is not None:
    if missing := sorted(set(norms) - set(layers)):
      raise ValueError(f"slimming: {missing} are not norm layers of the params")
    layers = {path: node for path, node in layers.items() if path in set(norms)}
  if not layers:
    raise ValueError("slimming: the params have no BatchNorm layers (no 'scale'/'bias' nodes)")
  scores = []
  for node in layers.values():
    gamma = np.abs(np.asarray(node["scale"], np.float64))
    protected = np.argsort(-gamma, kind="stable")[:min_channels]
    gamma[protected] = np.inf
    scores.append(gamma)
  flat = np.concatenate(scores)
  k = min(round(amount * flat.size), int(np.isfinite(flat).sum()))  # protected (inf) channels are never among k
  keep = prune_smallest(flat, np.ones(flat.size, bool), k)
  masks, start = {}, 0
  for path, node in layers.items():
    channels = int(np.shape(node["scale"])[0])
    mask = jnp.asarray(_round_up_kept(keep[start:start + channels], np.abs(np.asarray(node["scale"])), multiple))
    masks[f"{path}/scale"] = masks[f"{path}/bias"] = mask
    start += channels
  return masks


def _round_up_kept(keep: np.ndarray, gamma: np.ndarray, multiple: int) -> np.ndarray:
  """``keep`` with the largest-|γ| pruned channels kept back until the kept count is a multiple (or all)."""
  target = round_up(int(keep.sum()), keep.size, multiple)
  order = np.argsort(-np.where(keep, -np.inf, gamma), kind="stable")  # pruned channels, largest |γ| first
  keep = keep.copy()
  keep[order[:target - int(keep.sum())]] = True
  return keep


def pruned_channels(masks: Masks) -> dict[str, list[int]]:
  """{BN path: sorted pruned channel indices} (JSON-able) from slimming masks.

  Args:
    masks: slimming masks (only the '<layer>/scale' entries are read).

  Returns:
    {layer path: [indices where the scale mask is False]}, sorted by path.
  """
  return {path[: -len("/scale")]: np.flatnonzero(~np.asarray(m)).tolist()
          for path, m in sorted(masks.items()) if path.endswith("/scale")}


def masks_from_channels(params, channels: Mapping[str, list[int]]) -> Masks:
  """The slimming masks for ``params`` from ``pruned_channels`` output (e.g. read from a checkpoint).

  Args:
    params: a params pytree with norm layers (for their widths).
    channels: {norm layer path: [pruned channel index]}.

  Returns:
    {'<layer>/scale': m, '<layer>/bias': m} for every layer of ``channels`` (m: bool, False at the indices).

  Raises:
    ValueError: if a path is not a norm layer of ``params`` or an index is outside [0, channels).
  """
  layers = norm_widths(params)
  masks = {}
  for path, pruned in channels.items():
    if path not in layers:
      raise ValueError(f"slimming: pruned channels recorded for {path!r}, which is not a BN layer of the model")
    if any(not 0 <= i < layers[path] for i in pruned):
      raise ValueError(f"slimming: channel index out of range for {path!r} ({layers[path]} channels): {pruned}")
    keep = np.ones(layers[path], bool)
    keep[list(pruned)] = False
    masks[f"{path}/scale"] = masks[f"{path}/bias"] = jnp.asarray(keep)
  return masks


def summary(masks: Masks) -> dict[str, int]:
  """Channels before/after over all slimmed BN layers.

  Args:
    masks: slimming masks (only the '<layer>/scale' entries are read).

  Returns:
    {'channels_before': total channels, 'channels_after': total kept channels}.
  """
  scales = [np.asarray(m) for p, m in masks.items() if p.endswith("/scale")]
  return {"channels_before": int(sum(m.size for m in scales)), "channels_after": int(sum(m.sum() for m in scales))}


def group_masks(params, architecture: Architecture, amount: float, min_channels: int = 1, multiple: int = 1) -> Masks:
  """``channel_masks`` over the norm layers of the record's channel groups only (a ResNet's residual stream and any
  norm outside a group keep every channel).

  Args:
    params: the model's params.
    architecture: its record (a zoo model's: it gives the channel groups).
    amount: the fraction of the groups' channels to prune, in [0, 1).
    min_channels: channels each group keeps at least.
    multiple: kept channels per group rounded up to a multiple of this.

  Returns:
    As ``channel_masks``: {'<norm>/scale': m, '<norm>/bias': m} for every group's norm.

  Raises:
    ValueError: as ``channel_masks``.
  """
  norms = [g.norm for g in channels.channel_groups(architecture)]
  return channel_masks(params, amount, min_channels, norms=norms, multiple=multiple)


def budget_masks(params, architecture: Architecture, macs: Callable[[Architecture], int], macs_reduction: float,
                 multiple: int = 1) -> Masks:
  """Masks keeping, per channel group, its largest |γ| above one global threshold, bisected so that the rebuilt model
  has ≤ dense MACs / ``macs_reduction`` (``from_scratch.widths_for_budget`` on the groups' |γ|).

  The dense MACs are those of the record's svd-off model at its standard widths; widths are rounded up to
  ``multiple`` and the search counts the rounding. In each group the ``width`` channels of largest |γ| stay (ties:
  lower index).

  Args:
    params: the model's params (the γ of the groups' norms are read).
    architecture: its record.
    macs: ``macs(record) -> MACs`` of a record's model (e.g. ``jaxsvd.linen.flops.count`` of ``build_model()``).
    macs_reduction: R ≥ 1.
    multiple: every kept width rounded up to a multiple of this.

  Returns:
    {'<norm>/scale': m, '<norm>/bias': m} for every group's norm, m a bool (channels,) array.

  Raises:
    ValueError: one line naming ``slimming.macs_reduction`` if even one channel per group needs more MACs.
  """
  groups = channels.channel_groups(architecture)
  layers = leaves_by_path(params)
  gammas = {g.conv: np.abs(np.asarray(layers[f"{g.norm}/scale"], np.float64)) for g in groups}
  macs_of = lambda widths: macs(architecture.replace(widths={**(architecture.widths or {}), **widths}))  # noqa: E731
  dense = macs(architecture.dense().replace(widths=None))
  now = macs_of({conv: g.size for conv, g in gammas.items()})
  try:
    widths = from_scratch.widths_for_budget(gammas, macs_of, min(1.0, dense / macs_reduction / now), multiple)
  except ValueError:
    raise ValueError(f"slimming.macs_reduction={macs_reduction}: even one channel per group needs more "
                     f"MACs") from None
  masks = {}
  for g in groups:
    keep = np.zeros(gammas[g.conv].size, bool)
    keep[np.argsort(-gammas[g.conv], kind="stable")[:widths[g.conv]]] = True
    masks[f"{g.norm}/scale"] = masks[f"{g.norm}/bias"] = jnp.asarray(keep)
  return masks


def keep_indices(masks: Masks, groups: Sequence) -> dict[str, np.ndarray]:
  """{group conv path: sorted kept channel indices} from slimming masks (the ``keep`` of ``slice_channels``).

  Args:
    masks: slimming masks with a '<norm>/scale' entry for every group.
    groups: the ``ChannelGroup`` list.

  Returns:
    The kept indices of every group (int64 arrays).
  """
  return {g.conv: np.flatnonzero(np.asarray(masks[f"{g.norm}/scale"])) for g in groups}


def slim(variables: Mapping[str, Any], architecture: Architecture, masks: Masks) -> tuple[dict, Architecture, dict]:
  """The model rebuilt physically narrower: ``variables, record → variables', record', report``. Pure.

  Every variable carrying a group's channels is sliced to the channels ``masks`` keep
  (``channels.slice_channels``; SVD layers decomposed again at rank ≤ their new full rank). The record gets the
  new ``widths``, the removed channels added to ``pruned_channels`` (indices before this slimming),
  ``masked_channels`` cleared (format-1 masked channels are gone with the rebuild) and the ``ranks`` read back
  from the sliced params.

  Args:
    variables: the wide model's variables {'params': ..., 'batch_stats': ..., ...}.
    architecture: its record (a zoo model's).
    masks: slimming masks over the groups' norms (``group_masks``, ``budget_masks``).

  Returns:
    (variables of the narrow model as jax arrays, its record, report {'channels_before', 'channels_after',
    'widths', 'pruned_channels'} plus 'total_rank' and 'ranks' when the model has SVD layers).
  """
  groups = channels.channel_groups(architecture)
  keep = keep_indices(masks, groups)
  svd = architecture.svd
  sliced = channels.slice_channels(variables, groups, keep, channels.dense_kernel_shapes(architecture),
                                   svd.decomposition if svd else "channel", svd.sigma if svd else "signed")
  sliced = jax.tree.map(jnp.asarray, sliced)
  removed = pruned_channels(masks)
  architecture = architecture.replace(
      widths={**(architecture.widths or {}), **{conv: len(idx) for conv, idx in keep.items()}},
      pruned_channels={**(architecture.pruned_channels or {}), **removed},
      masked_channels=None, ranks=ranks(sliced["params"]))
  report = {**summary(masks), "widths": dict(architecture.widths), "pruned_channels": removed}
  if architecture.ranks:
    report.update(total_rank=total_rank(architecture.ranks), ranks=dict(architecture.ranks))
  return sliced, architecture, report


def channel_counts(architecture: Architecture, params) -> dict[str, int]:
  """Norm-layer channels (all norm layers) before and after slimming, read from the record; empty before slimming.

  Args:
    architecture: the record (``pruned_channels`` or, format 1, ``masked_channels``).
    params: the params at that record.

  Returns:
    {'bn_channels_before', 'bn_channels_after'}, or {} if the record has no slimmed channels.
  """
  now = sum(norm_widths(params).values())
  if architecture.masked_channels is not None:
    return {"bn_channels_before": now, "bn_channels_after": now - _count(architecture.masked_channels)}
  if architecture.pruned_channels is not None:
    return {"bn_channels_before": now + _count(architecture.pruned_channels), "bn_channels_after": now}
  return {}


def _count(recorded: Mapping[str, list[int]]) -> int:
  return sum(len(v) for v in recorded.values())


__all__ = ["channel_masks", "pruned_channels", "masks_from_channels", "summary", "group_masks", "budget_masks",
           "keep_indices", "slim", "channel_counts"]
