"""An SVD model's params converted for deployment: merged to dense kernels, or factored with √|s| in both factors.

``merged_params(params, dense_template)`` replaces each SVD layer {U, s, V[, bias]} by {kernel[, bias]}
with kernel = U·diag(s)·Vᵀ reshaped to the kernel shape found at the same path in
``dense_template`` (the params, or ``jax.eval_shape`` of them, of the same model with svd off).
The matrix view is read from the factor shapes (or given: ``merged_params(..., views=)``); stacked layers (``nn.scan``,
``nn.vmap``) merge per slice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax.core.meta import unbox

from jaxsvd.checkpoint.restoring import abstract_variables
from jaxsvd.core.matrix_view import MatrixView, conv_view, infer_decomposition, simple_view
from jaxsvd.core.structure import iter_svd_layers
from jaxsvd.core.svd import effective_s
from jaxsvd.core.tree import get_node, replace_nodes


def merged_params(params: Any, dense_template: Any, sigma: str = "signed",
          views: Mapping[str, MatrixView] | None = None) -> dict:
  """Dense params of the ordinary (svd off) model, W reconstructed from every SVD layer (stacked ones per slice).

  Args:
    params: the SVD model's params.
    dense_template: params (or their ``jax.eval_shape``) of the same model with svd off; only the shape of the
      ``kernel`` (or an Embed's ``embedding``) at each SVD layer's path is read.
    sigma: the model's ``svd.sigma``: 'abs' merges U·diag(|s|)·Vᵀ.
    views: {layer path: ``MatrixView``} (``jaxsvd.linen.SVDModel.report(x).views``) for layers whose view the shapes
      do not determine (grouped convs, Einsum kernels); other layers' views are inferred from the shapes: the kernel is
      (*lead, *in, *out) with U's leading axes as ``lead`` (Dense, Embed, DenseGeneral, channel-view convs, all
      under ``nn.scan``), or a 2-D conv's spatial view (``infer_decomposition``).

  Returns:
    ``params`` with each SVD layer {U, s, V[, bias]} replaced by {kernel (or embedding)[, bias]} (other leaves of
    the SVD node are dropped).

  Raises:
    ValueError: if the template has no kernel at an SVD layer's path, or the factors do not fit it.
  """
  new_nodes = {}
  for path, node in iter_svd_layers(unbox(params)):
    try:
      template = get_node(unbox(dense_template), path)
      name = next(k for k in ("kernel", "embedding") if k in template)
    except (KeyError, TypeError, StopIteration) as err:
      raise ValueError(f"dense template has no kernel at SVD layer path {path!r}") from err
    shape = tuple(np.shape(template[name]))
    view = (views or {}).get(path) or _inferred_view(node["U"], node["V"], shape)
    merged = {name: view.to_kernel(node["U"], effective_s(node["s"], sigma), node["V"]).reshape(shape)}
    if "bias" in node:
      merged["bias"] = node["bias"]
    new_nodes[path] = merged
  return replace_nodes(unbox(params), new_nodes)


def _inferred_view(U, V, shape) -> MatrixView:
  """The view of a kernel of ``shape`` (U's leading axes first) that fits U (*lead, m, r), V (*lead, k, r)."""
  lead = np.ndim(U) - 2
  kernel_shape = shape[lead:]
  if len(kernel_shape) == 4 and infer_decomposition(U[(0,) * lead], V[(0,) * lead], kernel_shape) == "spatial":
    return conv_view(kernel_shape, 1, "spatial")
  for n_in in range(len(kernel_shape) - 1, 0, -1):
    view = simple_view(kernel_shape, 0, n_in)
    if view.matrix_shape == (np.shape(U)[-2], np.shape(V)[-2]):
      return view
  raise ValueError(f"factors U{tuple(np.shape(U))}, V{tuple(np.shape(V))} do not fit kernel {shape}; "
                   f"pass views= (jaxsvd.linen.SVDModel.report(x).views)")


def factored_params(params: Any, sigma: str = "signed") -> dict:
  """SVD params with s folded symmetrically: U' = U·√|s|, V' = V·sign(s)·√|s| (V·√|s| for ``sigma='abs'``), s' = 1.

  The same model (any mode) applied to these gives the same outputs; the factored execution
  then needs no per-direction scaling.

  Args:
    params: the SVD model's params.
    sigma: the model's ``svd.sigma`` ('signed' or 'abs').

  Returns:
    ``params`` with every SVD layer's U, V, s replaced as above (U'·diag(s')·V'ᵀ = U·diag(s)·Vᵀ, or U·diag(|s|)·Vᵀ).
  """
  new_nodes = {}
  for path, node in iter_svd_layers(params):
    root = jnp.sqrt(jnp.abs(node["s"]))
    sign = jnp.ones_like(node["s"]) if sigma == "abs" else jnp.sign(node["s"])
    new_nodes[path] = {**node, "U": node["U"] * root[..., None, :], "V": node["V"] * (sign * root)[..., None, :],
                       "s": jnp.ones_like(node["s"])}
  return replace_nodes(params, new_nodes)


def save_params(directory: str, architecture, params: Any, model_state: Mapping, dense_model: Any = None) -> None:
  """Writes ``directory/merged`` (dense kernels of the svd-off model) and ``directory/factored`` (√|s| in both
  factors), each {'params', **model_state} as an Orbax checkpoint (collective: call it on every process).

  Args:
    directory: where to write (e.g. a run's ``export/``).
    architecture: the model's ``jaxsvd.core.record.Architecture`` (an SVD model; its dense twin gives the kernel
      shapes).
    params: the SVD model's params.
    model_state: the other variable collections (e.g. {'batch_stats': ...}), written unchanged.
    dense_model: the dense twin's linen model (None: ``architecture.dense().build_model()``, a zoo record's; a user
      record's caller builds it from its own module).
  """
  dense_model = architecture.dense().build_model() if dense_model is None else dense_model
  template = abstract_variables(dense_model, architecture.input_shape)["params"]
  sigma = architecture.svd.sigma
  merged = jax.device_get({"params": merged_params(params, template, sigma), **model_state})
  factored_variables = jax.device_get({"params": factored_params(params, sigma), **model_state})  # host arrays
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(os.path.join(directory, "merged")), merged, force=True)
    ckptr.save(os.path.abspath(os.path.join(directory, "factored")), factored_variables, force=True)


__all__ = ["merged_params", "factored_params", "save_params"]
