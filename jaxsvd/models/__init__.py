"""Model zoo; every model is built from (name, num_classes, SVDSpec with ranks)."""

from __future__ import annotations

import re
from typing import Callable, Mapping

import flax.linen as nn

from jaxsvd.layers import MODES
from jaxsvd.models.common import ChannelGroup, SVDSpec
from jaxsvd.models.resnet import ResNet, resnet18, resnet_cifar
from jaxsvd.models.vgg import VGG, vgg
from jaxsvd.svdify import SVDModel
from jaxsvd.validate import check_choice

MODEL_NAMES = ("resnet8", "resnet20", "resnet32", "resnet56", "resnet110", "resnet18",
               "vgg11", "vgg13", "vgg16", "vgg19")


def build_model(name: str, num_classes: int = 10, svd: SVDSpec | None = None,
                ranks: Mapping[str, int] | None = None, bn_axis_name: str | None = None,
                widths: Mapping[str, int] | None = None, gated: bool = False) -> nn.Module:
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

  Returns:
    The linen model (a ``ResNet`` or a ``VGG``).

  Raises:
    ValueError: if ``name`` is unknown, ``gated`` is asked of a VGG, or ``widths`` names a conv that is not a
      channel group's or a width that is not an int ≥ 1.
  """
  if name not in MODEL_NAMES:
    raise ValueError(f"model={name!r} is not one of {MODEL_NAMES}")
  if svd is not None and ranks is not None:
    svd = svd.with_ranks(ranks)
  depth = int(re.sub(r"\D", "", name))
  if not name.startswith("resnet"):
    if gated:
      raise ValueError(f"gated applies only to the ResNets, not model={name!r}")
    return vgg(depth, num_classes, svd, bn_axis_name).with_widths(widths)
  model = resnet18(num_classes, svd, bn_axis_name) if name == "resnet18" else resnet_cifar(
      depth, num_classes, svd, bn_axis_name=bn_axis_name)
  return model.with_widths(widths, gated) if widths or gated else model


def in_mode(apply_fn: Callable, mode: str | None) -> Callable:
  """``apply_fn`` (a zoo model's or an ``svdify.SVDModel``'s bound ``.apply``) of the same model with its
  SVD layers in ``mode``.

  The result is the same function to float tolerance; only the execution differs.

  Args:
    apply_fn: the bound ``.apply`` to convert.
    mode: one of ``layers.MODES``, or None.

  Returns:
    The ``.apply`` of the model in ``mode``; ``mode=None``, dense models and other functions are returned
    unchanged.

  Raises:
    ValueError: if ``mode`` is not None and not one of ``layers.MODES``.
  """
  if mode is None:
    return apply_fn
  check_choice("mode", mode, MODES)
  model = getattr(apply_fn, "__self__", None)
  if isinstance(model, SVDModel):
    return apply_fn if model.mode == mode else model.with_mode(mode).apply
  svd = getattr(model, "svd", None)
  if not isinstance(svd, SVDSpec) or svd.mode == mode:
    return apply_fn
  return model.clone(svd=svd.with_mode(mode)).apply


__all__ = ["ChannelGroup", "SVDSpec", "ResNet", "VGG", "build_model", "in_mode", "resnet18", "resnet_cifar", "vgg",
           "MODEL_NAMES"]
