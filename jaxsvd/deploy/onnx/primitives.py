"""jax primitives as ONNX nodes (opset 17): ``TABLE`` {primitive name: translate(graph, eqn, values) -> [names]}.

Convolutions and pools run channels-first in ONNX: the input is transposed to the layout the equation's dimension
numbers name, and the result back (ONNX Runtime's transpose optimizer cancels the pairs between layers); a
constant kernel is transposed here. Broadcasting follows numpy in both (jax's size-1 broadcasting is ONNX's).
A constant broadcast to a symbolic (batch) dimension reads that dimension from the graph input at run time. A gather
is translated when its indices are a constant grid (strided or listed slices) or a lookup of whole rows (an embedding,
whose indices must then be in range: ONNX has no fill mode). What does not map exactly (a transposed convolution, a
window pool over batch or channels, other gathers, a reshape with two symbolic dimensions) is a one-line
``ValueError``.
"""

from __future__ import annotations

import string

import numpy as np
from onnx import helper

from jaxsvd.deploy.onnx.graph import Graph, Tensor, is_static, where

BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow",
          "gt": "Greater", "lt": "Less", "ge": "GreaterOrEqual", "le": "LessOrEqual", "eq": "Equal", "and": "And",
          "or": "Or"}
UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh", "logistic": "Sigmoid", "sqrt": "Sqrt", "abs": "Abs",
         "sign": "Sign", "floor": "Floor", "ceil": "Ceil", "erf": "Erf", "sin": "Sin", "cos": "Cos", "not": "Not",
         "copy": "Identity", "copy_p": "Identity", "stop_gradient": "Identity", "reduce_precision": "Identity", "optimization_barrier": "Identity"}
REDUCE_ATTR = {"reduce_max": "ReduceMax", "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}  # axes: attribute


def _binary(op):
  def translate(g: Graph, eqn, values):
    return [g.node(op, [g.name(v) for v in values])]
  return translate


def _max(g: Graph, eqn, values):
  """``max(x, 0)`` as Relu (ONNX Runtime fuses it into the conv before it), else Max."""
  consts = [v for v in values if not isinstance(v, Tensor)]
  tensors = [v for v in values if isinstance(v, Tensor)]
  if len(tensors) == 1 and len(consts) == 1 and consts[0].size == 1 and not np.any(consts[0]) and \
     consts[0].ndim <= tensors[0].ndim:
    return [g.node("Relu", [tensors[0].name])]
  return [g.node("Max", [g.name(v) for v in values])]


def _unary(op):
  def translate(g: Graph, eqn, values):
    return [g.node(op, [g.name(values[0])])]
  return translate


def _fail(eqn, why: str):
  raise ValueError(f"onnx export: {eqn.primitive.name}{where(eqn)}: {why}")


def _rsqrt(g, eqn, values):
  return [g.node("Reciprocal", [g.node("Sqrt", [g.name(values[0])])])]


def _integer_pow(g, eqn, values):
  x, y = g.name(values[0]), eqn.params["y"]
  if y == 2:
    return [g.node("Mul", [x, x])]
  return [g.node("Pow", [x, g.const(np.asarray(y, eqn.outvars[0].aval.dtype))])]


def _square(g, eqn, values):
  x = g.name(values[0])
  return [g.node("Mul", [x, x])]


def _convert(g, eqn, values):
  to = helper.np_dtype_to_tensor_dtype(np.dtype(eqn.params["new_dtype"]))
  return [g.node("Cast", [g.name(values[0])], to=to)]


def _select_n(g, eqn, values):
  if len(values) != 3:
    _fail(eqn, "only two cases are supported")
  pred, false, true = (g.name(v) for v in values)
  if np.dtype(eqn.invars[0].aval.dtype) != np.bool_:
    pred = g.node("Cast", [pred], to=helper.np_dtype_to_tensor_dtype(np.dtype(np.bool_)))
  return [g.node("Where", [pred, true, false])]


def _clamp(g, eqn, values):
  low, x, high = (g.name(v) for v in values)
  return [g.node("Min", [g.node("Max", [x, low]), high])]


def _reduce_sum(g, eqn, values):
  axes = g.const(np.asarray(eqn.params["axes"], np.int64), "axes")
  return [g.node("ReduceSum", [g.name(values[0]), axes], keepdims=0)]


def _reduce_attr(op):
  def translate(g, eqn, values):
    return [g.node(op, [g.name(values[0])], axes=list(eqn.params["axes"]), keepdims=0)]
  return translate


def _argmax(g, eqn, values, op="ArgMax"):
  (axis,) = eqn.params["axes"]
  out = g.node(op, [g.name(values[0])], axis=int(axis), keepdims=0)
  to = helper.np_dtype_to_tensor_dtype(np.dtype(eqn.params["index_dtype"]))
  return [g.node("Cast", [out], to=to)]


def _onnx_shape(eqn, shape) -> np.ndarray:
  """A target shape for Reshape: ints, one symbolic dimension as -1."""
  dims = [int(d) if is_static(d) else -1 for d in shape]
  if dims.count(-1) > 1:
    _fail(eqn, f"a target shape with more than one symbolic dimension {tuple(shape)}")
  return np.asarray(dims, np.int64)


def _reshape(g, eqn, values):
  if eqn.params.get("dimensions") is not None:
    _fail(eqn, "reshape with dimensions= (a transposing reshape)")
  return [g.node("Reshape", [g.name(values[0]), g.const(_onnx_shape(eqn, eqn.params["new_sizes"]), "shape")])]


def _squeeze(g, eqn, values):
  axes = g.const(np.asarray(eqn.params["dimensions"], np.int64), "axes")
  return [g.node("Squeeze", [g.name(values[0]), axes])]


def _transpose(g, eqn, values):
  return [g.node("Transpose", [g.name(values[0])], perm=list(eqn.params["permutation"]))]


def _broadcast_in_dim(g, eqn, values):
  x, shape, dims = values[0], tuple(eqn.params["shape"]), tuple(eqn.params["broadcast_dimensions"])
  if list(dims) != sorted(dims):
    _fail(eqn, f"unsorted broadcast_dimensions {dims}")
  missing = [i for i in range(len(shape)) if i not in dims]
  name = g.name(x)
  if missing:
    name = g.node("Unsqueeze", [name, g.const(np.asarray(missing, np.int64), "axes")])
  source = [1] * len(shape)
  for i, d in zip(dims, x.shape):
    source[i] = d
  if all((is_static(s) and s == t) or (not is_static(s)) for s, t in zip(source, shape)):
    return [name]
  if all(is_static(shape[i]) for i in missing):  # symbolic dimensions come from the operand: 1 broadcasts them
    return [g.node("Expand", [name, g.const(np.asarray([int(d) if is_static(d) else 1 for d in shape], np.int64))])]
  target = g.shape_of(shape)
  if target is None:
    _fail(eqn, f"broadcasting to a symbolic dimension that no graph input has: {tuple(shape)}")
  return [g.node("Expand", [name, target])]


def _concatenate(g, eqn, values):
  return [g.node("Concat", [g.name(v) for v in values], axis=int(eqn.params["dimension"]))]


def _pad(g, eqn, values):
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config) or any(lo < 0 or hi < 0 for lo, hi, _ in config):
    _fail(eqn, "interior or negative padding")
  pads = np.asarray([lo for lo, _, _ in config] + [hi for _, hi, _ in config], np.int64)
  return [g.node("Pad", [g.name(values[0]), g.const(pads, "pads"), g.name(values[1])], mode="constant")]


def _slice(g, eqn, values):
  starts, limits = eqn.params["start_indices"], eqn.params["limit_indices"]
  strides = eqn.params["strides"] or (1,) * len(starts)
  inputs = [g.name(values[0])] + [g.const(np.asarray(a, np.int64), k) for k, a in
                                  (("starts", starts), ("ends", limits), ("axes", range(len(starts))),
                                   ("steps", strides))]
  return [g.node("Slice", inputs)]


def _dot_general(g, eqn, values):
  lhs, rhs = values
  ((lc, rc), (lb, rb)) = eqn.params["dimension_numbers"]
  if not lb and tuple(lc) == (len(lhs.shape) - 1,) and tuple(rc) == (0,) and len(rhs.shape) == 2:
    return [g.node("MatMul", [g.name(lhs), g.name(rhs)])]
  letters = iter(string.ascii_letters)
  left = [next(letters) for _ in lhs.shape]
  right = [next(letters) for _ in rhs.shape]
  for i, j in (*zip(lc, rc), *zip(lb, rb)):
    right[j] = left[i]
  out = [left[i] for i in lb] + [c for i, c in enumerate(left) if i not in (*lc, *lb)] + \
      [c for j, c in enumerate(right) if j not in (*rc, *rb)]
  equation = f"{''.join(left)},{''.join(right)}->{''.join(out)}"
  return [g.node("Einsum", [g.name(lhs), g.name(rhs)], equation=equation)]


def _to_layout(g, value, perm):
  """``value`` transposed by ``perm`` (a constant is transposed here)."""
  if isinstance(value, Tensor):
    return g.node("Transpose", [value.name], perm=list(perm))
  return g.const(np.ascontiguousarray(np.transpose(value, perm)), "kernel")


def _conv(g, eqn, values):
  p = eqn.params
  if any(d != 1 for d in p["lhs_dilation"]):
    _fail(eqn, "input dilation (a transposed convolution) has no ONNX Conv equivalent here")
  if p["batch_group_count"] != 1:
    _fail(eqn, "batch_group_count > 1")
  dn = p["dimension_numbers"]
  lo, hi = zip(*p["padding"]) if p["padding"] else ((), ())
  if min((*lo, *hi), default=0) < 0:
    _fail(eqn, "negative padding")
  y = g.node("Conv", [_to_layout(g, values[0], dn.lhs_spec), _to_layout(g, values[1], dn.rhs_spec)],
             strides=list(p["window_strides"]), dilations=list(p["rhs_dilation"]), group=int(p["feature_group_count"]),
             pads=[*lo, *hi])
  return [g.node("Transpose", [y], perm=[int(i) for i in np.argsort(dn.out_spec)])]


def _window(eqn, x: Tensor):
  """(perm to channels-first, kernel, strides, pads) of a channels-last window reduction over dims 1..n-2."""
  p = eqn.params
  window, strides, pads = p["window_dimensions"], p["window_strides"], p["padding"]
  if any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
    _fail(eqn, "dilated pooling windows")
  n = x.ndim
  if n < 3 or any(window[i] != 1 or strides[i] != 1 or tuple(pads[i]) != (0, 0) for i in (0, n - 1)):
    _fail(eqn, f"a window over the batch or channel axis (window {tuple(window)}); pools must be channels-last")
  inner = range(1, n - 1)
  perm = [0, n - 1, *inner]
  return perm, [window[i] for i in inner], [strides[i] for i in inner], \
      [pads[i][0] for i in inner] + [pads[i][1] for i in inner]


def _max_pool(g, eqn, values):
  perm, kernel, strides, pads = _window(eqn, values[0])
  y = g.node("MaxPool", [_to_layout(g, values[0], perm)], kernel_shape=kernel, strides=strides, pads=pads)
  return [g.node("Transpose", [y], perm=[int(i) for i in np.argsort(perm)])]


def _sum_pool(g, eqn, values):
  perm, kernel, strides, pads = _window(eqn, values[0])
  y = g.node("AveragePool", [_to_layout(g, values[0], perm)], kernel_shape=kernel, strides=strides, pads=pads,
             count_include_pad=1)
  y = g.node("Mul", [y, g.const(np.asarray(np.prod(kernel), eqn.outvars[0].aval.dtype))])
  return [g.node("Transpose", [y], perm=[int(i) for i in np.argsort(perm)])]


GRID_ONLY = "only constant index grids (strided, listed or windowed slices of each axis) are supported"


def _gathered_axes(eqn, idx: np.ndarray, axes, collapsed, sizes) -> list[tuple[int, np.ndarray]]:
  """(operand axis, 1-D indices) per indexed axis: a collapsed axis's list varies along its own grid axis (the k-th
  collapsed one along index axis k); a windowed axis starts at one constant offset."""
  grid = [k for k, d in enumerate(axes) if d in collapsed]
  if idx.ndim != len(grid) + 1:
    _fail(eqn, GRID_ONLY)
  out = []
  for j, k in enumerate(grid):
    line = idx[(*(0,) * j, slice(None), *(0,) * (len(grid) - j - 1), k)]
    full = np.broadcast_to(line.reshape([-1 if a == j else 1 for a in range(len(grid))]), idx.shape[:-1])
    if not np.array_equal(full, idx[..., k]):
      _fail(eqn, GRID_ONLY)
    out.append((axes[k], line.astype(np.int64)))
  for k, d in enumerate(axes):
    if d not in collapsed:
      first = idx[..., k].ravel()[:1]
      if not np.all(idx[..., k] == first):
        _fail(eqn, GRID_ONLY)
      out.append((d, np.arange(sizes[d]) + int(first[0])))
  return out


def _take_rows(g, eqn, values):
  """``table[indices]`` along axis 0 (an embedding lookup): ONNX Gather; the indices must be in range (ONNX has no
  fill mode)."""
  x, idx = values
  dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
  lead = idx.ndim - 1
  if tuple(dn.offset_dims) != tuple(range(lead, lead + x.ndim - 1)) or idx.shape[-1] != 1 or \
     any(sizes[d] != x.shape[d] for d in range(1, x.ndim)):
    _fail(eqn, "computed indices only as a lookup of whole rows (an embedding)")
  rows = g.node("Squeeze", [g.name(idx), g.const(np.asarray([lead], np.int64), "axes")])
  return [g.node("Gather", [g.name(x), rows], axis=0)]


def _gather(g, eqn, values):
  x, idx = values
  dn, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
  axes, collapsed = list(dn.start_index_map), set(dn.collapsed_slice_dims)
  if isinstance(idx, Tensor) and axes == [0] and collapsed == {0} and not dn.operand_batching_dims:
    return _take_rows(g, eqn, values)
  if isinstance(idx, Tensor) or dn.operand_batching_dims or not collapsed <= set(axes) or \
     any(sizes[d] != 1 for d in collapsed):
    _fail(eqn, GRID_ONLY)
  if any(is_static(x.shape[d]) and sizes[d] != x.shape[d] for d in range(x.ndim) if d not in axes):
    _fail(eqn, f"partial slices {tuple(sizes)} of the non-indexed axes")
  name = g.name(x)
  for axis, line in _gathered_axes(eqn, np.asarray(idx), axes, collapsed, sizes):
    if line.size and (line.min() < 0 or line.max() >= x.shape[axis]):
      _fail(eqn, f"indices out of bounds on axis {axis}")
    name = g.node("Gather", [name, g.const(line, "indices")], axis=int(axis))
  kept = iter(d for d in range(x.ndim) if d not in collapsed)
  grid, offsets = iter(d for d in axes if d in collapsed), set(dn.offset_dims)
  perm = [next(kept) if pos in offsets else next(grid) for pos in range(x.ndim)]
  return [name if perm == sorted(perm) else g.node("Transpose", [name], perm=perm)]


TABLE = {**{k: _binary(v) for k, v in BINARY.items()}, **{k: _unary(v) for k, v in UNARY.items()},
         **{k: _reduce_attr(v) for k, v in REDUCE_ATTR.items()},
         "max": _max, "rsqrt": _rsqrt, "integer_pow": _integer_pow, "square": _square, "convert_element_type": _convert,
         "select_n": _select_n, "clamp": _clamp, "reduce_sum": _reduce_sum, "argmax": _argmax,
         "argmin": lambda g, eqn, values: _argmax(g, eqn, values, "ArgMin"), "reshape": _reshape,
         "squeeze": _squeeze, "transpose": _transpose, "broadcast_in_dim": _broadcast_in_dim,
         "concatenate": _concatenate, "pad": _pad, "slice": _slice, "dot_general": _dot_general,
         "conv_general_dilated": _conv, "gather": _gather, "reduce_window_max": _max_pool, "reduce_window_sum": _sum_pool}

__all__ = ["BINARY", "UNARY", "REDUCE_ATTR", "TABLE"]
