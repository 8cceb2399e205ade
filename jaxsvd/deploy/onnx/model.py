"""A folded model (``jaxsvd.deploy.fold``) as an ONNX model: the input contract inside, a dynamic batch dimension.

``to_onnx(folded, plan, contract)`` traces ``images -> folded.apply(weights, normalize(images))`` once with a
symbolic batch dimension (``jax.make_jaxpr``) and emits the jaxpr as ONNX nodes (``graph.emit`` with
``primitives.TABLE``): BatchNorms are already folded, each SVD layer runs as its plan says (one conv / matmul, or two),
and every weight is an initializer. With an input contract the graph takes uint8 NHWC images as stored
(``images``: (batch, H, W, C)) and normalizes them inside exactly as the deploy runner does,
``(x / scale − mean) / std`` in float32; without one it takes normalized float32. The output ``logits``.

Metadata (``metadata_props``, strings; JSON where structured): ``format``, ``input`` (the contract),
``class_names``, ``plan``, ``macs_executed``, ``macs_model``, ``checkpoint_step``, ``jaxsvd_version`` and whatever
``extra`` adds.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import onnx
from onnx import helper

from jaxsvd.deploy.folding import Folded, run_layer
from jaxsvd.deploy.onnx import graph as graph_lib
from jaxsvd.deploy.onnx.primitives import TABLE
from jaxsvd.version import __version__

FORMAT = "jaxsvd-onnx-1"
OPSET = 17
INPUT, OUTPUT = "images", "logits"
BATCH = "batch"


def normalizer(contract: Mapping | None):
  """``f(images) -> model inputs`` in jax: the contract's ``(x / scale − mean) / std`` (identity without one).

  Args:
    contract: the input contract as JSON (``jaxsvd.core.contract``), or None.

  Returns:
    The function (float32 out), the same arithmetic as ``jaxsvd.deploy.runner.model_inputs``.
  """
  if contract is None:
    return lambda x: x
  mean, std = np.asarray(contract["mean"], np.float32), np.asarray(contract["std"], np.float32)
  scale = np.float32(contract["scale"])
  return lambda x: (x.astype(jnp.float32) / scale - mean) / std


def input_spec(shape, contract: Mapping | None) -> jax.ShapeDtypeStruct:
  """The graph input: (batch, *shape) with a symbolic batch, uint8 under a contract (else float32).

  Args:
    shape: one example's shape.
    contract: the input contract as JSON, or None.

  Returns:
    The ``ShapeDtypeStruct``.
  """
  (batch,) = jax.export.symbolic_shape(BATCH)
  return jax.ShapeDtypeStruct((batch, *shape), np.dtype(contract["dtype"]) if contract else np.float32)


def function_model(fn, spec: jax.ShapeDtypeStruct, name: str = "jaxsvd") -> onnx.ModelProto:
  """Any function of one array whose primitives ``primitives.TABLE`` covers, as an ONNX model.

  Args:
    fn: ``f(x) -> array`` (or a tuple of arrays); constants it closes over become initializers.
    spec: the input's shape (symbolic dimensions allowed) and dtype.
    name: the graph's name.

  Returns:
    The model: input ``images``, output ``logits`` (``logits_1``, ... if more than one).

  Raises:
    ValueError: one line naming a primitive or construct with no ONNX translation.
  """
  closed = graph_lib.trace(fn, spec)
  g = graph_lib.Graph()
  x = graph_lib.Tensor(INPUT, jax.core.ShapedArray(spec.shape, spec.dtype))
  g.symbols = {str(d): (INPUT, axis) for axis, d in enumerate(spec.shape) if not graph_lib.is_static(d)}
  outs = graph_lib.emit(g, closed, [x], TABLE)
  outputs = []
  for i, (value, var) in enumerate(zip(outs, closed.jaxpr.outvars, strict=True)):
    name_i = OUTPUT if i == 0 else f"{OUTPUT}_{i}"
    source = g.name(value)
    g.nodes.append(helper.make_node("Identity", [source], [name_i], name=name_i))
    outputs.append(graph_lib.Tensor(name_i, var.aval))
  model = g.model([x], outputs, OPSET, name)
  onnx.checker.check_model(model)
  return model


def to_onnx(folded: Folded, plan: Mapping[str, str], contract: Mapping | None,
            metadata: Mapping[str, Any] | None = None) -> onnx.ModelProto:
  """The folded model under ``plan`` as an ONNX model taking images as the contract says (see the module doc).

  Args:
    folded: the folded model.
    plan: {layer path: 'merged' | 'factored'} (``Folded.plan`` or ``tune.ort_plan``).
    contract: the input contract as JSON (uint8 images in, normalized inside), or None (normalized float32 in).
    metadata: more entries for ``metadata_props`` (values JSON-encoded unless strings).

  Returns:
    The checked ``ModelProto``.

  Raises:
    ValueError: one line naming a primitive (and where it was traced) with no ONNX translation.
  """
  weights = folded.weights(plan)
  normalize = normalizer(contract)
  model = function_model(lambda x: folded.apply(weights, normalize(x)), input_spec(folded.input_shape, contract))
  meta = {"format": FORMAT, "input": contract, "input_shape": list(folded.input_shape),
          "class_names": (contract or {}).get("class_names"), "plan": dict(plan),
          "macs_executed": folded.macs(plan), "folded_norms": folded.folded_norms, "kept_norms": folded.kept_norms,
          "jaxsvd_version": __version__, **dict(metadata or {})}
  return add_metadata(model, meta)


def add_metadata(model: onnx.ModelProto, entries: Mapping[str, Any]) -> onnx.ModelProto:
  """``model`` with ``entries`` added to its ``metadata_props`` (an existing key is replaced).

  Args:
    model: the model (changed in place).
    entries: {key: value}; values other than strings are stored as JSON.

  Returns:
    ``model``.
  """
  merged = {p.key: p.value for p in model.metadata_props}
  merged.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()})
  helper.set_model_props(model, merged)
  return model


def layer_model(folded: Folded, path: str, execution: str) -> onnx.ModelProto:
  """One rewritten layer alone in ``execution`` (what ``tune.ort_plan`` times), float32 in, batch symbolic.

  Args:
    folded: the folded model.
    path: the layer's path (``folded.sites``).
    execution: 'merged' or 'factored'.

  Returns:
    The model of ``run_layer`` on the layer's traced input shape.
  """
  site = folded.sites[path]
  w = folded.weights({**folded.plan("merged"), path: execution})["layers"][path]
  return function_model(lambda x: run_layer(site, w, x), input_spec(site.in_shape, None), path.replace("/", "."))


def metadata(model: onnx.ModelProto) -> dict[str, Any]:
  """The model's ``metadata_props``, JSON values decoded.

  Args:
    model: an ONNX model written by ``to_onnx``.

  Returns:
    {key: value}.
  """
  out = {}
  for prop in model.metadata_props:
    try:
      out[prop.key] = json.loads(prop.value)
    except json.JSONDecodeError:
      out[prop.key] = prop.value
  return out


def save(model: onnx.ModelProto, directory: str, name: str = "model.onnx") -> str:
  """Writes ``model`` to ``directory/name`` (directory created).

  Args:
    model: the model.
    directory: where.
    name: file name.

  Returns:
    The file's path.
  """
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, name)
  onnx.save_model(model, path)
  return path


__all__ = ["FORMAT", "OPSET", "INPUT", "OUTPUT", "BATCH", "normalizer", "input_spec", "function_model", "to_onnx",
           "layer_model", "add_metadata", "metadata", "save"]
