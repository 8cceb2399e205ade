"""CIFAR ResNets: ResNet-{8,20,32,56,110} (He et al. 2016, 3 stages of 16/32/64) and ResNet-18.

CIFAR ResNets default to option-A shortcuts (stride-2 subsampling + zero-padded channels, no
params), as in the paper's CIFAR experiments; ``shortcut='B'`` uses 1×1 conv + BN projections.
ResNet-18 is the CIFAR variant (3×3 stem, no max-pool, 64-128-256-512, option-B shortcuts).
``inner_widths`` ({block name: width}) narrows a block's inner channels (conv1 → bn1 → conv2), the widths
that pruning from scratch chooses; ``gated`` multiplies each block's bn1 output by a learnable gate α.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxsvd.models.common import ChannelGroup, SVDSpec, batch_norm, check_widths, conv, dense


class BasicBlock(nn.Module):
  """A residual block: conv1 (3×3, stride ``strides``, ``inner`` outputs, default ``features``) → bn1 → optional
  learnable per-channel ``gate`` → ReLU → conv2 (3×3, ``features``) → bn2, added to the shortcut, then ReLU. When
  the stride or width changes, the shortcut is option A (subsampling + zero-padded channels) for ``shortcut='A'``
  and otherwise option B (1×1 conv + BN projection).
  """
  features: int
  strides: int
  svd: SVDSpec | None
  shortcut: str = "A"
  bn_axis_name: str | None = None
  inner: int | None = None  # inner width (conv1's outputs); None = features
  gated: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    inner = self.inner or self.features
    y = conv(self, "conv1", self.svd, inner, strides=(self.strides,) * 2)(x)
    y = batch_norm(train, "bn1", self.bn_axis_name)(y)
    if self.gated:
      y = y * self.param("gate", nn.initializers.ones, (inner,), jnp.float32)
    y = nn.relu(y)
    y = conv(self, "conv2", self.svd, self.features)(y)
    y = batch_norm(train, "bn2", self.bn_axis_name)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      if self.shortcut == "A":
        x = x[:, :: self.strides, :: self.strides]
        extra = self.features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
      else:
        x = conv(self, "proj", self.svd, self.features, (1, 1), (self.strides,) * 2)(x)
        x = batch_norm(train, "proj_bn", self.bn_axis_name)(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A ResNet of ``BasicBlock``s: a 3×3 stem conv + BN + ReLU, ``stage_sizes[i]`` blocks of width ``widths[i]`` per
  stage (the first block of every stage after the first has stride 2), global average pooling and the classifier.
  ``svd`` (None: dense) gives the SVD layers; ``inner_widths`` and ``gated`` are passed to the blocks.
  """
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  num_classes: int = 10
  svd: SVDSpec | None = None
  shortcut: str = "A"
  bn_axis_name: str | None = None
  inner_widths: tuple[tuple[str, int], ...] = ()  # frozen {block name: inner width}
  gated: bool = False

  def blocks(self) -> list[tuple[str, int, int]]:
    """(name, width, stride) of every residual block, in order."""
    return [(f"stage{i + 1}_block{j}", width, 2 if i > 0 and j == 0 else 1)
            for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)) for j in range(blocks)]

  def channel_groups(self) -> list[ChannelGroup]:
    """Each block's inner channels: conv1 → bn1 (→ gate) → conv2. The residual stream (stem, conv2, projections)
    is not a group: every block adds into it, so its width stays as built."""
    return [ChannelGroup(f"{b}/conv1", f"{b}/bn1", (f"{b}/conv2",), f"{b}/gate" if self.gated else None)
            for b in self.block_names()]

  def with_widths(self, widths: Mapping[str, int] | None, gated: bool = False) -> ResNet:
    """This ResNet with inner widths ``widths`` ({'<block>/conv1': channels}; checked) and gates if ``gated``."""
    widths = check_widths(widths, self.channel_groups())
    inner = {path.rsplit("/", 1)[0]: width for path, width in widths.items()}
    return self.clone(inner_widths=tuple(sorted(inner.items())), gated=gated)

  def block_names(self) -> list[str]:
    """The names of the residual blocks ('stage1_block0', ...), in order."""
    return [name for name, _, _ in self.blocks()]

  @nn.compact
  def __call__(self, x, train: bool = False):
    dense_first = self.svd is not None and self.svd.dense_first
    x = conv(self, "stem", self.svd, self.widths[0], dense=dense_first)(x)
    x = nn.relu(batch_norm(train, "stem_bn", self.bn_axis_name)(x))
    inner = dict(self.inner_widths)
    for name, width, strides in self.blocks():
      x = BasicBlock(width, strides, self.svd, self.shortcut, self.bn_axis_name, inner.get(name), self.gated,
                     name=name)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return dense(self, "classifier", self.svd, self.num_classes,
                 force_dense=self.svd is not None and self.svd.dense_last)(x)


def resnet_cifar(depth: int, num_classes: int = 10, svd: SVDSpec | None = None, shortcut: str = "A",
                 bn_axis_name: str | None = None) -> ResNet:
  """The CIFAR ResNet-``depth``: 3 stages of (depth − 2) / 6 blocks, of widths 16, 32 and 64.

  Args:
    depth: 6n + 2 with n ≥ 1 (8, 20, 32, 56, 110, ...).
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    shortcut: 'A' (subsampling + zero-padding) or 'B' (1×1 conv + BN projection).
    bn_axis_name: device axis for synchronized BatchNorm, or None.

  Returns:
    The ``ResNet``.

  Raises:
    ValueError: if ``depth`` is not of the form 6n + 2 ≥ 8.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 20, 32, 56, 110, ...), got {depth}")
  n = (depth - 2) // 6
  return ResNet((n, n, n), (16, 32, 64), num_classes, svd, shortcut, bn_axis_name)


def resnet18(num_classes: int = 10, svd: SVDSpec | None = None, bn_axis_name: str | None = None) -> ResNet:
  """The CIFAR ResNet-18: 4 stages of 2 blocks, of widths 64, 128, 256 and 512, with option-B shortcuts.

  Args:
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    bn_axis_name: device axis for synchronized BatchNorm, or None.

  Returns:
    The ``ResNet``.
  """
  return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, svd, "B", bn_axis_name)
