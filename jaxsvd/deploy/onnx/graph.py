"""A jaxpr as an ONNX graph: constants folded on the host, each remaining equation one or a few ONNX nodes.

``Graph`` collects nodes and initializers; ``emit(graph, closed_jaxpr, inputs)`` walks the jaxpr: an equation whose
inputs are all known (weights, literals, what was folded before) is evaluated here with jax and kept as a constant
(weights reshaped, transposed or broadcast never reach the graph as nodes); call-like equations (``jit``,
``custom_jvp_call``, ...) are inlined; every other one is translated by ``primitives.TABLE``. A primitive missing
from the table is a one-line ``ValueError`` naming it and where it was traced.

Values are either host arrays (``np.ndarray``: known) or ``Tensor`` (a name in the graph and the jax aval).
Symbolic dimensions (``jax.export.symbolic_shape``) stay symbolic: a graph input or output dimension that is not an
int becomes an ONNX ``dim_param``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import numpy as np
import onnx
from jax.extend import core as jex_core
from onnx import helper, numpy_helper

# primitives whose equation runs an inner jaxpr on its inputs (its param holding the ClosedJaxpr)
CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
         "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
         "remat": "jaxpr", "checkpoint": "jaxpr"}


LIBRARY_PATHS = ("/jax/", "/flax/", "/jaxlib/", "/jaxsvd/deploy/")  # frames skipped when naming where


@dataclasses.dataclass(frozen=True)
class Tensor:
  """A value computed in the graph: its ONNX ``name`` and jax ``aval`` (shape may hold symbolic dimensions)."""
  name: str
  aval: Any

  @property
  def shape(self) -> tuple:
    """The jax shape (ints and symbolic dimensions)."""
    return tuple(self.aval.shape)

  @property
  def ndim(self) -> int:
    """The rank."""
    return len(self.aval.shape)


def is_static(dim) -> bool:
  """Whether a dimension is a plain int (not symbolic).

  Args:
    dim: a jax shape entry.

  Returns:
    True for an int.
  """
  return isinstance(dim, (int, np.integer))


class Graph:
  """An ONNX graph under construction: ``nodes``, ``initializers`` (name -> host array) and unique names."""

  def __init__(self):
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: dict[str, np.ndarray] = {}
    self.symbols: dict[str, tuple[str, int]] = {}  # symbolic dimension -> (graph input, axis) that carries it
    self._count = 0

  def fresh(self, prefix: str) -> str:
    """A new unique tensor name.

    Args:
      prefix: readable stem.

    Returns:
      ``prefix_N``.
    """
    self._count += 1
    return f"{prefix}_{self._count}"

  def const(self, array: Any, prefix: str = "const") -> str:
    """An initializer holding ``array`` (kept as it is: weights stay float32, shapes int64).

    Args:
      array: a host array or scalar.
      prefix: name stem.

    Returns:
      The initializer's name.
    """
    name = self.fresh(prefix)
    self.initializers[name] = np.asarray(array)
    return name

  def name(self, value: Any) -> str:
    """The graph name of a value: a ``Tensor``'s own, or a new initializer for a host array.

    Args:
      value: a ``Tensor`` or host array.

    Returns:
      A tensor name.
    """
    return value.name if isinstance(value, Tensor) else self.const(value)

  def shape_of(self, shape: Sequence) -> str | None:
    """A 1-D int64 tensor of ``shape`` at run time (symbolic dimensions read from the graph input that carries
    them), or None if a symbolic dimension is not a graph input's dimension (e.g. ``2 * batch``).

    Args:
      shape: ints and symbolic dimensions.

    Returns:
      The tensor's name, or None.
    """
    parts = []
    for d in shape:
      if is_static(d):
        parts.append(self.const(np.asarray([d], np.int64), "dim"))
      elif str(d) in self.symbols:
        source, axis = self.symbols[str(d)]
        parts.append(self.node("Gather", [self.node("Shape", [source]), self.const(np.asarray([axis], np.int64))],
                               axis=0))
      else:
        return None
    return self.node("Concat", parts, axis=0)

  def node(self, op: str, inputs: Sequence[str], **attrs) -> str:
    """Appends one node with one output.

    Args:
      op: the ONNX operator type.
      inputs: input tensor names ('' for an omitted optional input).
      **attrs: the node's attributes.

    Returns:
      The output's name.
    """
    out = self.fresh(op.lower())
    self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
    return out

  def model(self, inputs: Sequence[Tensor], outputs: Sequence[Tensor], opset: int, name: str) -> onnx.ModelProto:
    """The finished ``ModelProto`` (no metadata), its inputs and outputs named as given.

    Args:
      inputs: the graph inputs.
      outputs: the graph outputs (their names must be produced by nodes or be inputs).
      opset: the default-domain opset.
      name: the graph's name.

    Returns:
      The model.
    """
    graph = helper.make_graph(self.nodes, name, [value_info(t) for t in inputs], [value_info(t) for t in outputs],
                              [numpy_helper.from_array(a, n) for n, a in self.initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="jaxsvd")
    model.ir_version = 8  # opset 17's IR: read by every runtime that reads the opset
    return model


def value_info(t: Tensor) -> onnx.ValueInfoProto:
  """The graph input/output declaration of ``t``: element type and shape, symbolic dimensions as ``batch`` etc.

  Args:
    t: the tensor.

  Returns:
    The ``ValueInfoProto``.
  """
  dims = [int(d) if is_static(d) else str(d) for d in t.shape]
  elem = helper.np_dtype_to_tensor_dtype(np.dtype(t.aval.dtype))
  return helper.make_tensor_value_info(t.name, elem, dims)


def where(eqn) -> str:
  """Where an equation was traced, for error messages: its name stack or its source line ('' if unknown).

  Args:
    eqn: a jaxpr equation.

  Returns:
    Text such as `` (in layer1/conv1)``.
  """
  stack = str(getattr(eqn.source_info, "name_stack", "") or "")
  if stack:
    return f" (in {stack})"
  frames = getattr(getattr(eqn.source_info, "traceback", None), "frames", None) or []
  user = [f for f in frames if not any(part in f.file_name for part in LIBRARY_PATHS)]
  return f" (at {user[0].file_name}:{user[0].line_num})" if user else ""


def emit(graph: Graph, closed: Any, inputs: Sequence[Any], table: dict, outer: Any = None) -> list[Any]:
  """The outputs of ``closed`` (a ``ClosedJaxpr``) applied to ``inputs``, emitted into ``graph``.

  Args:
    graph: the graph being built.
    closed: the ClosedJaxpr (its consts are host-known).
    inputs: one value per invar: a ``Tensor`` or a host array.
    table: {primitive name: translate(graph, eqn, values) -> list of output names} (``primitives.TABLE``).
    outer: the call equation whose jaxpr this is (errors name its location when an inner one has none).

  Returns:
    One value per outvar (``Tensor`` or host array).

  Raises:
    ValueError: one line naming a primitive the table lacks (and where it was traced).
  """
  env: dict = {}

  def read(atom):
    return np.asarray(atom.val) if isinstance(atom, jex_core.Literal) else env[atom]

  for var, value in zip(closed.jaxpr.constvars, closed.consts):
    env[var] = np.asarray(value)
  for var, value in zip(closed.jaxpr.invars, inputs, strict=True):
    env[var] = value
  for eqn in closed.jaxpr.eqns:
    values = [read(a) for a in eqn.invars]
    for var, out in zip(eqn.outvars, _equation(graph, eqn, values, table, outer), strict=True):
      env[var] = out
  return [read(a) for a in closed.jaxpr.outvars]


def _equation(graph: Graph, eqn, values: list, table: dict, outer) -> list:
  name = eqn.primitive.name
  if name in CALLS and CALLS[name] in eqn.params:
    inner = eqn.params[CALLS[name]]
    inner = inner if hasattr(inner, "consts") else jex_core.ClosedJaxpr(inner, ())
    return emit(graph, inner, values, table, eqn if outer is None or where(eqn) else outer)
  static = all(is_static(d) for v in eqn.outvars for d in getattr(v.aval, "shape", ()))
  if static and all(isinstance(v, np.ndarray) for v in values):  # known: fold on the host
    out = eqn.primitive.bind(*values, **eqn.params)
    return [np.asarray(o) for o in (out if eqn.primitive.multiple_results else [out])]
  located = where(eqn) or (where(outer) if outer is not None else "")
  if name not in table:
    raise ValueError(f"onnx export: primitive {name!r}{located} has no ONNX translation")
  try:
    names = table[name](graph, eqn, values)
  except ValueError as err:  # a translation's own one line, located at the caller when the equation is not
    prefix = f"onnx export: {name}: "
    raise ValueError(str(err).replace(prefix, f"onnx export: {name}{located}: ", 1)) from None
  return [Tensor(n, v.aval) for n, v in zip(names, eqn.outvars, strict=True)]


def trace(fn, spec: jax.ShapeDtypeStruct):
  """``jax.make_jaxpr`` of ``fn`` on one input of ``spec`` (its dimensions may be symbolic).

  Args:
    fn: a function of one array.
    spec: the input's shape and dtype.

  Returns:
    The ClosedJaxpr.
  """
  return jax.make_jaxpr(fn)(spec)


__all__ = ["CALLS", "LIBRARY_PATHS", "Tensor", "Graph", "is_static", "value_info", "where", "emit", "trace"]
