"""SVD configuration of a model and the layer factories every model uses.

A model is (architecture config, ``SVDSpec``); the spec carries the ranks mapping
{layer path → rank}. ``svd=None`` gives the ordinary dense model (same init, same code path).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.svd import compute_dtype, default_kernel_init
from jaxsvd.core.validate import check_min_int
from jaxsvd.linen.layers import ConvSVD, DenseSVD

# flax's dtype/param_dtype convention (params float32, operands cast to ``dtype``) plus float32 sums: the
# conv/dot_general the dense layers call when a compute dtype is set (bfloat16 products, float32 accumulation).
_F32_SUM_CONV = functools.partial(lax.conv_general_dilated, preferred_element_type=jnp.float32)
_F32_SUM_DOT = functools.partial(lax.dot_general, preferred_element_type=jnp.float32)


def _path(parent: nn.Module, name: str) -> str:
  return "/".join((*parent.path, name))


def _precision(dtype_name: str, op: str) -> dict:
  """The dense layer's kwargs for compute dtype ``dtype_name`` ({} for float32: the float32 program unchanged)."""
  dtype = compute_dtype(dtype_name)
  if dtype is None:
    return {}
  summed = _F32_SUM_CONV if op == "conv_general_dilated" else _F32_SUM_DOT
  return {"dtype": dtype, "param_dtype": jnp.float32, op: summed}


def conv(parent: nn.Module, name: str, svd: SVDSpec | None, features: int, kernel=(3, 3), strides=(1, 1),
         dense: bool = False, dtype: str = "float32") -> nn.Module:
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
    dtype: the compute dtype ('float32' | 'bfloat16'): operands cast to it, products summed in float32 (the output's
      dtype), params float32.

  Returns:
    An ``nn.Conv`` without bias, or a ``ConvSVD`` at ``svd.rank_of(path)`` (dense too when ``svd.dense_strided``
    and a stride exceeds 1).
  """
  padding = kernel[0] // 2
  if svd is None or dense or (svd.dense_strided and max(strides) > 1):
    return nn.Conv(features, kernel, strides, padding, use_bias=False, kernel_init=default_kernel_init, name=name,
                   **_precision(dtype, "conv_general_dilated"))
  return ConvSVD(features, kernel, strides, padding, rank=svd.rank_of(_path(parent, name)),
                 decomposition=svd.decomposition, mode=svd.mode, sigma=svd.sigma, init_scheme=svd.init,
                 dtype=compute_dtype(dtype), name=name)


def dense(parent: nn.Module, name: str, svd: SVDSpec | None, features: int, force_dense: bool = False,
          dtype: str = "float32") -> nn.Module:
  """A dense layer, or a ``DenseSVD`` at the layer's rank when ``svd`` is given.

  Args:
    parent: the module the layer belongs to (with ``name``, its path gives the layer's rank).
    name: the layer's name.
    svd: the model's SVD spec; None gives an ``nn.Dense``.
    features: output features.
    force_dense: keep this layer dense even when ``svd`` is given.
    dtype: the compute dtype, as in ``conv`` (the logits stay float32: products are summed in float32).

  Returns:
    An ``nn.Dense`` or a ``DenseSVD`` (both with bias).
  """
  if svd is None or force_dense:
    return nn.Dense(features, kernel_init=default_kernel_init, name=name, **_precision(dtype, "dot_general"))
  return DenseSVD(features, rank=svd.rank_of(_path(parent, name)), mode=svd.mode, sigma=svd.sigma, init_scheme=svd.init,
                  dtype=compute_dtype(dtype), name=name)


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


__all__ = ["conv", "dense", "batch_norm", "ChannelGroup", "check_widths"]
