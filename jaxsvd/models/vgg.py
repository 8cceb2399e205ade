"""VGG-11/13/16/19 with BatchNorm for CIFAR (cfg lists as in network slimming, Liu et al. 2017)."""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxsvd.core.svd import COMPUTE_DTYPES
from jaxsvd.core.validate import check_choice
from jaxsvd.models.common import ChannelGroup, SVDSpec, batch_norm, check_widths, conv, dense

CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512),
}


class VGG(nn.Module):
  """VGG with BatchNorm: each ``cfg`` entry is a 3×3 conv of that width + BN + ReLU, or 'M' for a 2×2 max-pool;
  then global average pooling and the classifier. ``svd`` (None: dense) gives the SVD layers; ``compute_dtype`` the
  dtype of every conv and matmul (``common.conv``).
  """
  cfg: Sequence[int | str]
  num_classes: int = 10
  svd: SVDSpec | None = None
  bn_axis_name: str | None = None
  compute_dtype: str = "float32"  # convs/matmuls in 'float32' | 'bfloat16' (float32 params, BN, sums, logits)

  def __post_init__(self):
    check_choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
    super().__post_init__()

  def channel_groups(self) -> list[ChannelGroup]:
    """Every conv's output channels: conv{i} → bn{i} → conv{i+1} (the last: → the classifier, after pooling)."""
    n = sum(1 for item in self.cfg if item != "M")
    return [ChannelGroup(f"conv{i}", f"bn{i}", (f"conv{i + 1}",) if i + 1 < n else ("classifier",)) for i in range(n)]

  def with_widths(self, widths: Mapping[str, int] | None) -> VGG:
    """This VGG with conv output widths replaced by ``widths`` ({'conv{i}': channels}; checked)."""
    widths = check_widths(widths, self.channel_groups())
    cfg, index = [], 0
    for item in self.cfg:
      if item != "M":
        item, index = widths.get(f"conv{index}", int(item)), index + 1
      cfg.append(item)
    return self.clone(cfg=tuple(cfg))

  @nn.compact
  def __call__(self, x, train: bool = False):
    index = 0
    for item in self.cfg:
      if item == "M":
        x = nn.max_pool(x, (2, 2), (2, 2))
        continue
      first = index == 0 and self.svd is not None and self.svd.dense_first
      x = conv(self, f"conv{index}", self.svd, int(item), dense=first, dtype=self.compute_dtype)(x)
      x = nn.relu(batch_norm(train, f"bn{index}", self.bn_axis_name)(x))
      index += 1
    x = jnp.mean(x, axis=(1, 2))
    return dense(self, "classifier", self.svd, self.num_classes,
                 force_dense=self.svd is not None and self.svd.dense_last, dtype=self.compute_dtype)(x)


def vgg(depth: int, num_classes: int = 10, svd: SVDSpec | None = None, bn_axis_name: str | None = None) -> VGG:
  """VGG-``depth`` with the layer list ``CFGS[depth]``.

  Args:
    depth: 11, 13, 16 or 19.
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    bn_axis_name: device axis for synchronized BatchNorm, or None.

  Returns:
    The ``VGG``.

  Raises:
    ValueError: if ``depth`` is not in ``CFGS``.
  """
  if depth not in CFGS:
    raise ValueError(f"VGG depth={depth} is not one of {tuple(CFGS)}")
  return VGG(CFGS[depth], num_classes, svd, bn_axis_name)


__all__ = ["CFGS", "VGG", "vgg"]
