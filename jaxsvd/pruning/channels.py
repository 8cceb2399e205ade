"""Physical channel pruning: a model's variables sliced to the kept channels of its channel groups.

A ``models.ChannelGroup`` is one conv's output channels, its norm layer, and the layers reading them as inputs.
Given kept indices per group, every variable that carries those channels is sliced:

  producer conv   dense kernel (..., c, n) → [..., keep] (and its bias)
  norm layer      every leaf under its path in every collection (scale, bias, mean, var) → [keep]
  consumers       dense kernel inputs → ``take(keep, axis=-2)`` (a conv's c; a Dense layer after global pooling)
  gate            [keep]
  SVD layer       the kernel W = U·diag(s)·Vᵀ is rebuilt, sliced as above and decomposed again at rank
                  min(r, new full rank): exact, since slicing rows or columns of a rank-r matrix keeps rank ≤ r.
                  (An output channel is a row of U in the channel view; an input channel a block of V's rows.)

When the dropped channels are exactly zero after their norm layer (network slimming zeroes γ and β; ReLU(0) = 0),
the sliced model computes the same function as the masked one: the consumers only ever read zeros from them.

A zoo model's groups and shapes come from its architecture record (``channel_groups``, ``dense_kernel_shapes``,
``group_widths``): the record builds the model, ``jax.eval_shape`` gives the shapes, no array is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.core.meta import AxisMetadata

from jaxsvd.core.factors import factors_to_kernel, kernel_to_matrix
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import is_svd_node, unboxed
from jaxsvd.core.tree import get_node, leaves_by_path, replace_nodes


def kernel_shapes(dense_params) -> dict[str, tuple[int, ...]]:
  """{layer path: kernel shape} of every Dense/Conv layer in the params of the svd-off twin.

  Args:
    dense_params: params (arrays or ``jax.ShapeDtypeStruct``, e.g. ``checkpoint.abstract_variables(...)['params']``)
      whose layers hold 'kernel' leaves.

  Returns:
    The kernel shapes, e.g. {'conv1': (3, 3, 16, 32), 'classifier': (64, 10)}.
  """
  return {path[: -len("/kernel")]: tuple(leaf.shape) for path, leaf in leaves_by_path(dense_params).items()
          if path.endswith("/kernel")}


def channel_groups(architecture: Architecture) -> list:
  """The channel groups of the record's model (``model.channel_groups()``: every VGG conv, each ResNet block's conv1;
  a ResNet's residual stream is in none).

  Args:
    architecture: a zoo model's record.

  Returns:
    The model's ``ChannelGroup`` list (conv, norm, consumers, gate paths).
  """
  return list(architecture.build_model().channel_groups())


def dense_kernel_shapes(architecture: Architecture) -> dict[str, tuple[int, ...]]:
  """``kernel_shapes`` of the record's svd-off twin (same widths), from ``jax.eval_shape``: no arrays are made.

  Args:
    architecture: a zoo model's record (its input shape is one example's, float32).

  Returns:
    {layer path: dense kernel shape}, the ``shapes`` argument of ``slice_channels``.
  """
  model = architecture.dense().build_model()
  x = jax.ShapeDtypeStruct((1, *architecture.input_shape), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  return kernel_shapes(jax.tree.map(unboxed, params, is_leaf=lambda leaf: isinstance(leaf, AxisMetadata)))


def group_widths(architecture: Architecture) -> dict[str, int]:
  """{group conv path: output channels} of the record's model now (its ``widths`` where set, else the built ones).

  Args:
    architecture: a zoo model's record.

  Returns:
    The width of every channel group, keyed like the record's ``widths``.
  """
  shapes = dense_kernel_shapes(architecture)
  return {g.conv: int(shapes[g.conv][-1]) for g in channel_groups(architecture)}


def _slice_kernel(kernel: np.ndarray, out_keep, in_keep) -> np.ndarray:
  if out_keep is not None:
    kernel = np.take(kernel, out_keep, axis=-1)
  if in_keep is not None:
    kernel = np.take(kernel, in_keep, axis=-2)
  return kernel


def _slice_svd_node(node: Mapping, kernel_shape, decomposition: str, out_keep, in_keep, sigma: str = "signed") -> dict:
  dtype = np.asarray(node["s"]).dtype
  U, s, V = (np.asarray(node[k], np.float64) for k in ("U", "s", "V"))
  decomposition = "channel" if len(kernel_shape) == 2 else decomposition
  s = np.abs(s) if sigma == "abs" else s  # the kernel the layer computes; the new s ≥ 0 means the same in both modes
  kernel = _slice_kernel(np.asarray(factors_to_kernel(U, s, V, kernel_shape, decomposition)), out_keep, in_keep)
  u, sv, vt = np.linalg.svd(np.asarray(kernel_to_matrix(kernel, decomposition)), full_matrices=False)
  r = min(len(s), len(sv))
  new = {"U": u[:, :r].astype(dtype), "s": sv[:r].astype(dtype), "V": vt[:r].T.astype(dtype)}
  return {**node, **new, **_sliced_bias(node, out_keep)}


def _sliced_bias(node: Mapping, out_keep) -> dict:
  if "bias" not in node or out_keep is None:
    return {}
  return {"bias": np.take(np.asarray(node["bias"]), out_keep, axis=-1)}


def _slice_layer(node: Mapping, path: str, shapes, decomposition, out_keep, in_keep, sigma="signed") -> dict:
  if is_svd_node(node):
    if path not in shapes:
      raise ValueError(f"channels: no dense kernel shape for SVD layer {path!r}")
    return _slice_svd_node(node, shapes[path], decomposition, out_keep, in_keep, sigma)
  if "kernel" not in node:
    raise ValueError(f"channels: layer {path!r} has neither a 'kernel' nor U, s, V")
  kernel = _slice_kernel(np.asarray(node["kernel"]), out_keep, in_keep)
  return {**node, "kernel": kernel, **_sliced_bias(node, out_keep)}


def _layer_slices(groups, keep) -> dict[str, list]:
  """{layer path: [out_keep, in_keep]} over every group's producer and consumers."""
  slices: dict[str, list] = {}
  for group in groups:
    idx = np.asarray(keep[group.conv], np.int64)
    slices.setdefault(group.conv, [None, None])[0] = idx
    for consumer in group.consumers:
      slices.setdefault(consumer, [None, None])[1] = idx
  return slices


def slice_channels(variables: Mapping[str, Any], groups: Sequence, keep: Mapping[str, Any],
                   shapes: Mapping[str, tuple[int, ...]], decomposition: str = "channel",
                   sigma: str = "signed") -> dict:
  """``variables`` with every group narrowed to its kept channels (see the module doc). Pure.

  Args:
    variables: flax variables {'params': ..., 'batch_stats': ..., ...} of the wide model.
    groups: the model's ``ChannelGroup`` list (``model.channel_groups()``).
    keep: {group conv path: sorted indices of the channels kept}; groups not in it are left whole.
    shapes: {layer path: dense kernel shape} of the wide model (``kernel_shapes``), for its SVD layers.
    decomposition: the SVD layers' matrix view, 'channel' or 'spatial'.
    sigma: the SVD layers' ``sigma`` ('abs': the kernel is U·diag(|s|)·Vᵀ).

  Returns:
    The variables of the narrow model (``build_model(widths={conv: len(keep[conv])})``), as numpy arrays.
  """
  groups = [g for g in groups if g.conv in keep]
  params = variables["params"]
  nodes = {path: _slice_layer(get_node(params, path), path, shapes, decomposition, *sl, sigma)
           for path, sl in _layer_slices(groups, keep).items()}
  for group in groups:
    if group.gate is not None:  # a leaf path: replace_nodes swaps leaves as well as subtrees
      nodes[group.gate] = np.take(np.asarray(get_node(params, group.gate)), keep[group.conv], axis=0)
  out = {"params": replace_nodes(params, nodes)}
  norms = {group.norm: np.asarray(keep[group.conv], np.int64) for group in groups}
  for collection, tree in variables.items():
    out[collection] = replace_nodes(out.get(collection, tree), {
        path: jax.tree.map(lambda leaf, idx=idx: np.take(np.asarray(leaf), idx, axis=0), get_node(tree, path))
        for path, idx in norms.items() if _has(tree, path)})
  return out


def _has(tree, path: str) -> bool:
  try:
    get_node(tree, path)
    return True
  except (KeyError, TypeError):
    return False


__all__ = ["kernel_shapes", "channel_groups", "dense_kernel_shapes", "group_widths", "slice_channels"]
