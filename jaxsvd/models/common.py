"""SVD configuration of a model and the layer factories every model uses.

A model is (architecture config, ``SVDSpec``); the spec carries the ranks mapping
{layer path → rank}. ``svd=None`` gives the ordinary dense model (same init, same code path).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import flax.linen as nn

from jaxsvd.layers import DECOMPOSITIONS, MODES, ConvSVD, DenseSVD, default_kernel_init
from jaxsvd.structure import check_rank, validate_ranks
from jaxsvd.validate import check_choice


@dataclasses.dataclass(frozen=True)
class SVDSpec:
  decomposition: str = "channel"
  mode: str = "auto"
  ranks: tuple[tuple[str, int], ...] = ()  # frozen {path: rank}; missing paths use default_rank
  default_rank: int | None = None  # None = full rank (fixed low-rank baselines set e.g. 8)
  dense_first: bool = True  # keep the first conv dense
  dense_last: bool = True  # keep the classifier dense

  def __post_init__(self):
    check_choice("svd.decomposition", self.decomposition, DECOMPOSITIONS)
    check_choice("svd.mode", self.mode, MODES)
    validate_ranks(dict(self.ranks))
    check_rank("svd.default_rank", self.default_rank, allow_none=True)

  def rank_of(self, path: str) -> int | None:
    return dict(self.ranks).get(path, self.default_rank)

  def with_ranks(self, ranks: Mapping[str, int]) -> "SVDSpec":
    return dataclasses.replace(self, ranks=tuple(sorted((str(k), int(v)) for k, v in ranks.items())))

  def with_mode(self, mode: str) -> "SVDSpec":
    return dataclasses.replace(self, mode=mode)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["ranks"] = dict(self.ranks)
    return d

  @classmethod
  def from_dict(cls, d: Mapping | None) -> "SVDSpec | None":
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
  stride-2 convs asymmetrically)."""
  padding = kernel[0] // 2
  if svd is None or dense:
    return nn.Conv(features, kernel, strides, padding, use_bias=False, kernel_init=default_kernel_init, name=name)
  return ConvSVD(features, kernel, strides, padding, rank=svd.rank_of(_path(parent, name)),
                 decomposition=svd.decomposition, mode=svd.mode, name=name)


def dense(parent: nn.Module, name: str, svd: SVDSpec | None, features: int, force_dense: bool = False) -> nn.Module:
  if svd is None or force_dense:
    return nn.Dense(features, kernel_init=default_kernel_init, name=name)
  return DenseSVD(features, rank=svd.rank_of(_path(parent, name)), mode=svd.mode, name=name)


def batch_norm(train: bool, name: str, axis_name: str | None = None) -> nn.BatchNorm:
  """BatchNorm; with ``axis_name`` the batch statistics are averaged over that device axis (sync BN)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name, name=name)
