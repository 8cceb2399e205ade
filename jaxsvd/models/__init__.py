"""The model zoo: every model is built from (name, num_classes, SVDSpec with ranks, widths) — its architecture record.

  common   ``SVDSpec``'s use in layers (``conv`` / ``dense`` factories: SVD or dense per path), ``ChannelGroup``
  resnet   CIFAR ResNets (8…110; shortcut A | B, basic | bottleneck), ResNet-18 and ResNet-50 (ImageNet)
  vgg      VGG-11/13/16/19 for CIFAR

``build_model`` is registered as the 'zoo' builder (``jaxsvd.core.registry``), so ``Architecture.build_model`` builds
these without the core importing them.
"""

from __future__ import annotations

import re
from typing import Mapping

import flax.linen as nn

from jaxsvd.core import registry
from jaxsvd.core.svd import COMPUTE_DTYPES
from jaxsvd.core.validate import check_choice
from jaxsvd.models.common import ChannelGroup, SVDSpec
from jaxsvd.models.resnet import BLOCKS, SHORTCUTS, ResNet, resnet18, resnet50, resnet_cifar
from jaxsvd.models.vgg import VGG, vgg

MODEL_NAMES = ("resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18", "resnet50",
               "vgg11", "vgg13", "vgg16", "vgg19")
# Architecture options of the CIFAR ResNets (``build_model(options=...)``, the record's ``options``).
CIFAR_RESNET_OPTIONS = {"shortcut": SHORTCUTS, "block": BLOCKS, "bottleneck_relu": (False, True)}


def check_options(name: str, options: Mapping | None) -> dict:
  """``options`` as a dict, checked against model ``name`` (only the CIFAR ResNets take any).

  Args:
    name: the model name.
    options: {option: value}, or None.

  Returns:
    The options as a plain dict.

  Raises:
    ValueError: one line naming an option the model does not take or a value not among its choices.
  """
  options = dict(options or {})
  allowed = CIFAR_RESNET_OPTIONS if _is_cifar_resnet(name) else {}
  for key, value in options.items():
    if key not in allowed:
      raise ValueError(f"model_options.{key} is not an option of model={name!r} (options: {sorted(allowed)})")
    check_choice(f"model_options.{key}", value, allowed[key])
  return options


def _is_cifar_resnet(name: str) -> bool:
  return name.startswith("resnet") and name not in ("resnet18", "resnet50")


def build_model(name: str, num_classes: int = 10, svd: SVDSpec | None = None,
                ranks: Mapping[str, int] | None = None, bn_axis_name: str | None = None,
                widths: Mapping[str, int] | None = None, gated: bool = False,
                options: Mapping | None = None, compute_dtype: str = "float32") -> nn.Module:
  """The model ``name`` with SVD layers at ``ranks`` and channel widths ``widths``.

  Args:
    name: one of ``MODEL_NAMES``.
    num_classes: the classifier's outputs.
    svd: the SVD spec; None builds the dense model.
    ranks: {layer path: rank} replacing ``svd.ranks`` (unused when ``svd`` is None).
    bn_axis_name: (pmap training only) synchronizes BatchNorm statistics across devices.
    widths: {conv path: output channels} of the model's channel groups (``model.channel_groups()``: every VGG
      conv; each ResNet block's conv1); missing convs keep their standard width.
    gated: ResNets only: adds pruning-from-scratch gates (``jaxsvd.pruning.from_scratch``).
    options: CIFAR ResNets only: {'shortcut': 'A' | 'B', 'block': 'basic' | 'bottleneck', 'bottleneck_relu': bool}
      (``resnet_cifar``; missing: its defaults).
    compute_dtype: 'float32' or 'bfloat16', the dtype every conv and matmul runs in (params, BatchNorm, the sums
      and the logits stay float32; ``common.conv``).

  Returns:
    The linen model (a ``ResNet`` or a ``VGG``).

  Raises:
    ValueError: if ``name`` or ``compute_dtype`` is unknown, ``gated`` is asked of a VGG, or ``widths`` names a conv
      that is not a channel group's or a width that is not an int ≥ 1.
  """
  if name not in MODEL_NAMES:
    raise ValueError(f"model={name!r} is not one of {MODEL_NAMES}")
  check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
  model = _standard_model(name, num_classes, svd, ranks, bn_axis_name, check_options(name, options))
  if gated and not name.startswith("resnet"):
    raise ValueError(f"gated applies only to the ResNets, not model={name!r}")
  model = model.with_widths(widths, gated) if gated else model.with_widths(widths) if widths else model
  return model if compute_dtype == "float32" else model.clone(compute_dtype=compute_dtype)


def _standard_model(name, num_classes, svd, ranks, bn_axis_name, options) -> nn.Module:
  """The zoo model ``name`` at its standard widths (``build_model``'s arguments)."""
  if svd is not None and ranks is not None:
    svd = svd.with_ranks(ranks)
  depth = int(re.sub(r"\D", "", name))
  if not name.startswith("resnet"):
    return vgg(depth, num_classes, svd, bn_axis_name)
  if name in ("resnet18", "resnet50"):
    return (resnet18 if name == "resnet18" else resnet50)(num_classes, svd, bn_axis_name)
  return resnet_cifar(depth, num_classes, svd, bn_axis_name=bn_axis_name, **options)


registry.register("zoo", build_model)


__all__ = ["ChannelGroup", "SVDSpec", "ResNet", "VGG", "build_model", "check_options", "resnet18",
           "resnet50", "resnet_cifar", "vgg", "MODEL_NAMES"]
