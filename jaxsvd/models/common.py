"""SVD configuration of a model and the layer factories every model uses.

A model is (architecture config, ``SVDSpec``); the spec carries the ranks mapping
{layer path → rank}. ``svd=None`` gives the ordinary dense model (same init, same code path).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import flax.linen as nn

from jaxsvd.layers import DECOMPOSITIONS, INITS, MODES, SIGMAS, ConvSVD, DenseSVD, default_kernel_init
from jaxsvd.structure import check_rank, validate_ranks
from jaxsvd.validate import check_choice, check_min_int


@dataclasses.dataclass(frozen=True)
class SVDSpec:
  """How a zoo model uses SVD layers: the decomposition, the execution mode, the ranks (frozen {layer path: rank};
  other layers get ``default_rank``, None = full rank), and whether the first conv and the classifier stay dense.
  ``sigma`` ('signed' | 'abs') and ``init`` ('svd_of_he' | 'official') are the SVD layers' (``jaxsvd.layers``);
  ``dense_strided`` keeps every conv with a stride > 1 dense (the official ``--svd_s1``).
  Invalid fields raise a ``ValueError`` on construction.
  """
  decomposition: str = "channel"
  mode: str = "auto"
  ranks: tuple[tuple[str, int], ...] = ()  # frozen {path: rank}; missing paths use default_rank
  default_rank: int | None = None  # None = full rank (fixed low-rank baselines set e.g. 8)
  dense_first: bool = True  # keep the first conv dense
  dense_last: bool = True  # keep the classifier dense
  sigma: str = "signed"  # records without it (older checkpoints) read as 'signed'
  init: str = "svd_of_he"
  dense_strided: bool = False

  def __post_init__(self):
    check_choice("svd.decomposition", self.decomposition, DECOMPOSITIONS)
    check_choice("svd.mode", self.mode, MODES)
    check_choice("svd.sigma", self.sigma, SIGMAS)
    check_choice("svd.init", self.init, INITS)
    validate_ranks(dict(self.ranks))
    check_rank("svd.default_rank", self.default_rank, allow_none=True)

  def rank_of(self, path: str) -> int | None:
    """The rank of the layer at ``path``.

    Args:
      path: the '/'-joined layer path.

    Returns:
      Its rank in ``ranks``, else ``default_rank`` (None = full rank).
    """
    return dict(self.ranks).get(path, self.default_rank)

  def with_ranks(self, ranks: Mapping[str, int]) -> "SVDSpec":
    """This spec with ``ranks`` replacing all its ranks.

    Args:
      ranks: {layer path: rank}.

    Returns:
      A new ``SVDSpec``.

    Raises:
      ValueError: if a rank, converted to int, is below 1.
    """
    return dataclasses.replace(self, ranks=tuple(sorted((str(k), int(v)) for k, v in ranks.items())))

  def with_mode(self, mode: str) -> "SVDSpec":
    """This spec with execution mode ``mode``.

    Args:
      mode: one of ``layers.MODES``.

    Returns:
      A new ``SVDSpec``.

    Raises:
      ValueError: if ``mode`` is not one of ``layers.MODES``.
    """
    return dataclasses.replace(self, mode=mode)

  def to_dict(self) -> dict:
    """The spec as a plain dict, ``ranks`` as a {path: rank} dict (``from_dict`` reads it back)."""
    d = dataclasses.asdict(self)
    d["ranks"] = dict(self.ranks)
    return d

  @classmethod
  def from_dict(cls, d: Mapping | None) -> "SVDSpec | None":
    """The spec that ``to_dict`` wrote.

    Args:
      d: the dict, or None.

    Returns:
      The ``SVDSpec``, or None when ``d`` is None.

    Raises:
      ValueError: if a field is invalid.
      TypeError: if ``d`` has a key that is not a field.
    """
    if d is None:
      return None
    d = dict(d)
    d["ranks"] = tuple(sorted((str(k), int(v)) for k, v in dict(d.get("ranks") or {}).items()))
    return cls(**d)


def _path(parent: nn.Module, name: str) -> str:
  return "/".join((*parent.path, name))


def conv(parent: nn.Module, name: str, svd: SVDSpec | None, features: int, kernel=(3, 3), strides=(1, 1),
         dense: bool = False) -> nn.Module:
  """Conv with symmetric k//2 padding (as the original CIFAR ResNets / PyTorch; XLA 'SAME' pads
  stride-2 convs asymmetrically).

  Args:
    parent: the module the layer belongs to (with ``name``, its path gives the layer's rank).
    name: the layer's name.
    svd: the model's SVD spec; None gives a dense conv.
    features: output channels.
    kernel: the kernel size; the padding is ``kernel[0] // 2`` on every side.
    strides: the strides.
    dense: keep this layer dense even when ``svd`` is given.

  Returns:
    An ``nn.Conv`` without bias, or a ``ConvSVD`` at ``svd.rank_of(path)`` (dense too when ``svd.dense_strided``
    and a stride exceeds 1).
  """
  padding = kernel[0] // 2
  if svd is None or dense or (svd.dense_strided and max(strides) > 1):
    return nn.Conv(features, kernel, strides, padding, use_bias=False, kernel_init=default_kernel_init, name=name)
  return ConvSVD(features, kernel, strides, padding, rank=svd.rank_of(_path(parent, name)),
                 decomposition=svd.decomposition, mode=svd.mode, sigma=svd.sigma, init_scheme=svd.init, name=name)


def dense(parent: nn.Module, name: str, svd: SVDSpec | None, features: int, force_dense: bool = False) -> nn.Module:
  """A dense layer, or a ``DenseSVD`` at the layer's rank when ``svd`` is given.

  Args:
    parent: the module the layer belongs to (with ``name``, its path gives the layer's rank).
    name: the layer's name.
    svd: the model's SVD spec; None gives an ``nn.Dense``.
    features: output features.
    force_dense: keep this layer dense even when ``svd`` is given.

  Returns:
    An ``nn.Dense`` or a ``DenseSVD`` (both with bias).
  """
  if svd is None or force_dense:
    return nn.Dense(features, kernel_init=default_kernel_init, name=name)
  return DenseSVD(features, rank=svd.rank_of(_path(parent, name)), mode=svd.mode, sigma=svd.sigma, init_scheme=svd.init,
                  name=name)


def batch_norm(train: bool, name: str, axis_name: str | None = None) -> nn.BatchNorm:
  """BatchNorm; with ``axis_name`` the batch statistics are averaged over that device axis (sync BN).

  Args:
    train: normalize with the batch statistics (and update the running averages) if True, else with the
      running averages.
    name: the layer's name.
    axis_name: the device axis to average the statistics over, or None.

  Returns:
    The ``nn.BatchNorm`` (momentum 0.9, epsilon 1e-5).
  """
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name, name=name)


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
  """One set of channels a model can lose physically: produced by ``conv``, normalized by ``norm``, read as input
  channels by ``consumers`` (and scaled by a pruning-from-scratch ``gate`` param, if any). Its width is the
  architecture datum ``widths[conv]``."""
  conv: str
  norm: str
  consumers: tuple[str, ...]
  gate: str | None = None


def check_widths(widths: Mapping[str, int] | None, groups: Sequence[ChannelGroup]) -> dict[str, int]:
  """``widths`` as a dict, checked: every key is a group's conv path and every width an int ≥ 1.

  Args:
    widths: {conv path: output channels}, or None.
    groups: the model's channel groups.

  Returns:
    The widths as a plain dict.

  Raises:
    ValueError: naming the first unknown key or bad width.
  """
  widths = dict(widths or {})
  known = [g.conv for g in groups]
  if unknown := sorted(set(widths) - set(known)):
    raise ValueError(f"widths names {unknown}, which are not prunable convs of the model ({known})")
  for path, width in widths.items():
    check_min_int(f"widths[{path!r}]", width, 1)
  return widths
