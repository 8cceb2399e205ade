"""ResNets: CIFAR ResNet-{8,20,32,...,110} (He et al. 2016, 3 stages of 16/32/64), ResNet-18 (CIFAR variant) and
the ImageNet ResNet-50.

CIFAR ResNets default to basic blocks with option-A shortcuts (stride-2 subsampling + zero-padded channels, no
params); ``shortcut='B'`` uses 1×1 conv + BN projections and ``block='bottleneck'`` the official SVD code's CIFAR
Bottleneck (depth ≥ 44 there: 1×1 → 3×3 (stride) → 1×1 with 4× expansion, widths 16/32/64 → 64/128/256 outputs,
option-B shortcuts, and **no ReLU after bn2** — the official ``CNN/cifar10/resnet.py`` comments it out;
``bottleneck_relu=True`` restores it, as the official ImageNet Bottleneck has it).
ResNet-18 is the CIFAR variant (3×3 stem, no max-pool, 64-128-256-512, option-B shortcuts). ResNet-50 is the
ImageNet layout (7×7 stride-2 stem, 3×3 stride-2 max-pool, 3-4-6-3 bottleneck blocks of 64..512 × 4, option B).
``inner_widths`` ({conv path: width}) narrows a block's inner channels (basic: conv1 → bn1 → conv2; bottleneck also
conv2 → bn2 → conv3), the widths that pruning from scratch and slimming choose; ``gated`` multiplies each basic
block's bn1 output by a learnable gate α.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxsvd.core.svd import COMPUTE_DTYPES
from jaxsvd.core.validate import check_choice
from jaxsvd.models.common import ChannelGroup, SVDSpec, batch_norm, check_widths, conv, dense

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B")
STEMS = ("cifar", "imagenet")


def shortcut(parent: nn.Module, x, features: int, strides: int, kind: str, train: bool, bn_axis_name):
  """The residual branch: ``x`` itself, or (when the stride or width changes) option A (subsampling + zero-padded
  channels) or option B (``proj`` 1×1 conv + ``proj_bn``).

  Args:
    parent: the block (called from its compact ``__call__``); option B's ``proj`` / ``proj_bn`` are its
      submodules, and its ``svd`` spec and ``compute_dtype`` make ``proj`` (``common.conv``).
    x: the block's NHWC input (batch, H, W, c).
    features: the block's output channels.
    strides: the block's stride (both spatial axes).
    kind: 'A' for option A; any other value ('B') for option B.
    train: whether ``proj_bn`` normalizes with batch statistics (``common.batch_norm``).
    bn_axis_name: the device axis ``proj_bn`` averages its statistics over, or None.

  Returns:
    ``x`` unchanged if ``strides == 1`` and c == ``features``; else (batch, ⌈H/strides⌉, ⌈W/strides⌉, features):
    option A's ``x[:, ::strides, ::strides]`` zero-padded on the channel axis (extra // 2 channels before, the
    rest after), or option B's ``proj_bn(proj(x))``.
  """
  if strides == 1 and x.shape[-1] == features:
    return x
  if kind == "A":
    x = x[:, ::strides, ::strides]
    extra = features - x.shape[-1]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
  x = conv(parent, "proj", parent.svd, features, (1, 1), (strides,) * 2, dtype=parent.compute_dtype)(x)
  return batch_norm(train, "proj_bn", bn_axis_name)(x)


class BasicBlock(nn.Module):
  """A residual block: conv1 (3×3, stride ``strides``, ``inner`` outputs, default ``features``) → bn1 → optional
  learnable per-channel ``gate`` → ReLU → conv2 (3×3, ``features``) → bn2, added to the ``shortcut``, then ReLU.
  """
  features: int
  strides: int
  svd: SVDSpec | None
  shortcut: str = "A"
  bn_axis_name: str | None = None
  inner: int | None = None  # inner width (conv1's outputs); None = features
  gated: bool = False
  compute_dtype: str = "float32"  # the convs' ('float32' | 'bfloat16'; ``common.conv``)

  @nn.compact
  def __call__(self, x, train: bool):
    inner = self.inner or self.features
    y = conv(self, "conv1", self.svd, inner, strides=(self.strides,) * 2, dtype=self.compute_dtype)(x)
    y = batch_norm(train, "bn1", self.bn_axis_name)(y)
    if self.gated:
      y = y * self.param("gate", nn.initializers.ones, (inner,), jnp.float32)
    y = nn.relu(y)
    y = conv(self, "conv2", self.svd, self.features, dtype=self.compute_dtype)(y)
    y = batch_norm(train, "bn2", self.bn_axis_name)(y)
    return nn.relu(shortcut(self, x, self.features, self.strides, self.shortcut, train, self.bn_axis_name) + y)


class Bottleneck(nn.Module):
  """conv1 (1×1, ``inner1``) → bn1 → ReLU → conv2 (3×3, stride, ``inner2``) → bn2 (→ ReLU if ``relu2``) → conv3 (1×1,
  4·``features``) → bn3, added to the ``shortcut``, then ReLU (the official SVD code's layout; see the module doc)."""
  features: int  # planes; the block outputs 4·features
  strides: int
  svd: SVDSpec | None
  shortcut: str = "B"
  bn_axis_name: str | None = None
  inner1: int | None = None
  inner2: int | None = None
  relu2: bool = False
  compute_dtype: str = "float32"  # the convs' ('float32' | 'bfloat16'; ``common.conv``)

  @nn.compact
  def __call__(self, x, train: bool):
    y = conv(self, "conv1", self.svd, self.inner1 or self.features, (1, 1), dtype=self.compute_dtype)(x)
    y = nn.relu(batch_norm(train, "bn1", self.bn_axis_name)(y))
    y = conv(self, "conv2", self.svd, self.inner2 or self.features, strides=(self.strides,) * 2,
             dtype=self.compute_dtype)(y)
    y = batch_norm(train, "bn2", self.bn_axis_name)(y)
    y = nn.relu(y) if self.relu2 else y
    y = conv(self, "conv3", self.svd, 4 * self.features, (1, 1), dtype=self.compute_dtype)(y)
    y = batch_norm(train, "bn3", self.bn_axis_name)(y)
    return nn.relu(shortcut(self, x, 4 * self.features, self.strides, self.shortcut, train, self.bn_axis_name) + y)


class ResNet(nn.Module):
  """A ResNet: a stem (``'cifar'``: 3×3 conv; ``'imagenet'``: 7×7 stride-2 conv + 3×3 stride-2 max-pool) + BN + ReLU,
  ``stage_sizes[i]`` blocks (``block``: 'basic' or 'bottleneck') of width ``widths[i]`` per stage (the first block
  of every stage after the first has stride 2), global average pooling and the classifier. ``svd`` (None: dense)
  gives the SVD layers; ``compute_dtype`` the dtype of every conv and matmul (``common.conv``); ``inner_widths``
  ({conv path: width}) and ``gated`` (basic blocks) are passed to the blocks.
  """
  stage_sizes: Sequence[int]
  widths: Sequence[int]
  num_classes: int = 10
  svd: SVDSpec | None = None
  shortcut: str = "A"
  bn_axis_name: str | None = None
  inner_widths: tuple[tuple[str, int], ...] = ()  # frozen {conv path: inner width}
  gated: bool = False
  block: str = "basic"
  bottleneck_relu: bool = False  # ReLU after bn2 of a bottleneck (official CIFAR code: no; ImageNet: yes)
  stem: str = "cifar"
  stem_width: int | None = None  # None = widths[0]
  compute_dtype: str = "float32"  # convs/matmuls in 'float32' | 'bfloat16' (float32 params, BN, sums, logits)

  def __post_init__(self):
    check_choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
    check_choice("block", self.block, BLOCKS)
    check_choice("shortcut", self.shortcut, SHORTCUTS)
    check_choice("stem", self.stem, STEMS)
    if self.gated and self.block != "basic":
      raise ValueError("gated applies only to basic-block ResNets")
    super().__post_init__()

  def blocks(self) -> list[tuple[str, int, int]]:
    """(name, width, stride) of every residual block, in order."""
    return [(f"stage{i + 1}_block{j}", width, 2 if i > 0 and j == 0 else 1)
            for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)) for j in range(blocks)]

  def channel_groups(self) -> list[ChannelGroup]:
    """Each block's inner channels: conv1 → bn1 (→ gate) → conv2 (bottleneck: also conv2 → bn2 → conv3). The
    residual stream (stem, last conv, projections) is not a group: every block adds into it, so its width stays."""
    if self.block == "bottleneck":
      return [ChannelGroup(f"{b}/conv{i}", f"{b}/bn{i}", (f"{b}/conv{i + 1}",))
              for b in self.block_names() for i in (1, 2)]
    return [ChannelGroup(f"{b}/conv1", f"{b}/bn1", (f"{b}/conv2",), f"{b}/gate" if self.gated else None)
            for b in self.block_names()]

  def with_widths(self, widths: Mapping[str, int] | None, gated: bool = False) -> ResNet:
    """This ResNet with inner widths ``widths`` ({'<block>/conv1': channels, ...}; checked) and gates if ``gated``."""
    widths = check_widths(widths, self.channel_groups())
    return self.clone(inner_widths=tuple(sorted(widths.items())), gated=gated)

  def block_names(self) -> list[str]:
    """The names of the residual blocks ('stage1_block0', ...), in order."""
    return [name for name, _, _ in self.blocks()]

  def _stem(self, x, train: bool):
    dense_first = self.svd is not None and self.svd.dense_first
    imagenet = self.stem == "imagenet"
    kernel, strides = ((7, 7), (2, 2)) if imagenet else ((3, 3), (1, 1))
    x = conv(self, "stem", self.svd, self.stem_width or self.widths[0], kernel, strides, dense=dense_first,
             dtype=self.compute_dtype)(x)
    x = nn.relu(batch_norm(train, "stem_bn", self.bn_axis_name)(x))
    return nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1))) if imagenet else x

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self._stem(x, train)
    inner = dict(self.inner_widths)
    for name, width, strides in self.blocks():
      if self.block == "bottleneck":
        x = Bottleneck(width, strides, self.svd, self.shortcut, self.bn_axis_name, inner.get(f"{name}/conv1"),
                       inner.get(f"{name}/conv2"), self.bottleneck_relu, self.compute_dtype, name=name)(x, train)
      else:
        x = BasicBlock(width, strides, self.svd, self.shortcut, self.bn_axis_name, inner.get(f"{name}/conv1"),
                       self.gated, self.compute_dtype, name=name)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return dense(self, "classifier", self.svd, self.num_classes,
                 force_dense=self.svd is not None and self.svd.dense_last, dtype=self.compute_dtype)(x)


def resnet_cifar(depth: int, num_classes: int = 10, svd: SVDSpec | None = None, shortcut: str | None = None,
                 bn_axis_name: str | None = None, block: str = "basic", bottleneck_relu: bool = False) -> ResNet:
  """The CIFAR ResNet-``depth``: 3 stages of widths 16, 32 and 64 (bottleneck blocks output 4× that).

  Args:
    depth: basic blocks: 6n + 2 with n ≥ 1 (8, 20, 32, 56, 110, ...), n blocks per stage; bottleneck blocks: the
      official code's 6n + 2 too (n blocks per stage of three convs each, so ResNet-56 has 9n + 2 conv layers).
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    shortcut: 'A' (subsampling + zero-padding) or 'B' (1×1 conv + BN projection); None: 'A' for basic, 'B' for
      bottleneck blocks.
    bn_axis_name: device axis for synchronized BatchNorm, or None.
    block: 'basic' or 'bottleneck'.
    bottleneck_relu: ReLU after a bottleneck's bn2 (the official CIFAR code has none).

  Returns:
    The ``ResNet``.

  Raises:
    ValueError: if ``depth`` is not of the form 6n + 2 ≥ 8, or ``block``/``shortcut`` is unknown.
  """
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f"CIFAR ResNet depth must be 6n+2 (8, 20, 32, 56, 110, ...), got {depth}")
  n = (depth - 2) // 6
  shortcut = shortcut or ("B" if block == "bottleneck" else "A")
  return ResNet((n, n, n), (16, 32, 64), num_classes, svd, shortcut, bn_axis_name, block=block,
                bottleneck_relu=bottleneck_relu)


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


def resnet50(num_classes: int = 1000, svd: SVDSpec | None = None, bn_axis_name: str | None = None) -> ResNet:
  """The ImageNet ResNet-50 (official SVD code's layout: 7×7/2 stem + max-pool, bottlenecks with the ReLU after bn2,
  stride on the 3×3 conv, option-B shortcuts; its stem is an SVD layer when ``svd.dense_first`` is False).

  Args:
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    bn_axis_name: device axis for synchronized BatchNorm, or None.

  Returns:
    The ``ResNet``.
  """
  return ResNet((3, 4, 6, 3), (64, 128, 256, 512), num_classes, svd, "B", bn_axis_name, block="bottleneck",
                bottleneck_relu=True, stem="imagenet", stem_width=64)


__all__ = ["BLOCKS", "SHORTCUTS", "STEMS", "shortcut", "BasicBlock", "Bottleneck", "ResNet", "resnet_cifar",
           "resnet18", "resnet50"]
