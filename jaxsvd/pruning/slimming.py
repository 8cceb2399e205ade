"""Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming").

Train with an L1 penalty on every BatchNorm scale γ (``optim`` field ``bn_l1``), then pick the channels whose
|γ| is smallest over all (prunable) norm layers, one global threshold (``channel_masks``), then fine-tune.
Masking a channel's γ and β to zero makes its BN output γ·x̂ + β exactly 0, so it carries nothing: the same
function as removing it, which ``pruning.channels.slice_channels`` then does physically (the experiment's
slimming event rebuilds the narrower model). The pruned channels are data: ``pruned_channels`` ({BN path:
[channel, ...]}) goes into the checkpoint's architecture record; ``masks_from_channels`` rebuilds masks from it
(format-1 checkpoints held slimmed channels at zero with ``masks.keep_pruned`` instead of removing them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jaxsvd.core.structure import norm_layers, norm_widths
from jaxsvd.core.validate import check_in_range, check_min_int
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


__all__ = ["channel_masks", "pruned_channels", "masks_from_channels", "summary"]
