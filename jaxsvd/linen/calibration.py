"""Calibration statistics of a linen model: each converted layer's input second moment in its matrix view.

``collect(model, variables, batches, views)`` runs the dense ``model`` over the batches (one jitted pass per
batch) with every layer call intercepted (``nn.intercept_methods``); the input x of each layer in ``views`` is
turned into the vectors its matrix W (m × k) multiplies, in the view's column order (each layer kind's
``moments``, ``jaxsvd.linen.kinds``):

  Dense                   x[..., c]: one vector per leading index
  DenseGeneral            the contracted ``axis`` dims flattened in the kernel's order; ``batch_dims`` are stack axes
  Conv (channel view)     the im2col patches (∏k·c/g per group, kernel-axis-major like the kernel (*k, c/g, n)), with
                          the layer's strides, padding and dilations (``lax.conv_general_dilated_patches``)
  Conv (spatial view)     the kh·c column patches of the first (kh × 1) factor conv, at every input column: the
                          error measured is that of the kw·n intermediate channels before the horizontal (1 × kw)
                          sum, which bounds the output error up to a factor kw (an approximation of the output error)
  Embed                   token counts: C = diag(count(token)) / N (the lookup's one-hot input)
Their Σ x xᵀ, Σ |x| and count are summed per batch in float32 on the devices (a batch sharded over devices or
processes is reduced by XLA) and accumulated in float64 on the host (``calibration.LayerStats``). A layer called
twice adds both calls. Einsum: its contracted input letters per stack index (``core.calibration.einsum_rows``) of the
string the call used (its ``einsum_str`` argument, else the module's). Layers under ``nn.scan``/``nn.vmap`` (with or
without ``nn.remat``, nested) are measured per slice: each call in the transform's trace hands its moments and a
fingerprint of its kernel slice to the host (``jaxsvd.linen.lifted``), so a stacked kernel (L, ...) gets
``LayerStats`` with second_moment (L, *S, k, k), slice ℓ's own inputs. Layers not listed (ConvTranspose, ConvLocal,
Embed's ``attend``, a conv with 'CIRCULAR'/'CAUSAL' padding) get no statistics: their decomposition falls back to
'plain' (``compress`` names them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

import flax.linen as nn
import jax
import numpy as np
from flax.core import meta, tracers
from jax.experimental import multihost_utils

from jaxsvd.core.calibration import LayerStats
from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.tree import get_node
from jaxsvd.linen import kinds, lifted


def layer_moments(module: nn.Module, x, view: MatrixView, call: tuple | None = None):
  """(Σ x xᵀ (*L, k, k), Σ |x| (*L, k), count) of one call's input vectors in ``view``'s column space, float32.

  Args:
    module: the layer (Dense, DenseGeneral, Embed lookup, Conv, Einsum: module doc).
    x: its input.
    view: its ``MatrixView``.
    call: (args, kwargs) of the call (an Einsum's string may come with it), or None.

  Returns:
    The three sums, or None for a layer kind without statistics.
  """
  kind = kinds.resolve(module)
  return None if kind is None else kind.call_moments(module, x, view, call)


def _lifted(module: nn.Module, outer_trace) -> bool:
  """Whether ``module`` runs in a trace of its own (under ``nn.scan``/``nn.vmap``/``nn.remat``/``nn.jit``): its
  scope was made at another trace level than the model's apply, so a value computed there cannot leave it."""
  return module.scope is not None and module.scope.trace_level != outer_trace


def batch_moments(model: nn.Module, views: Mapping[str, MatrixView], call_kwargs: Mapping, variables, args,
                  sink: list | None = None) -> dict:
  """{layer path: ``layer_moments`` summed over its calls} of one ``model.apply(variables, *args, **call_kwargs)``.

  Args:
    model: the dense linen model.
    views: {layer path ('/'-joined ``module.path``): ``MatrixView``} of the layers to measure.
    call_kwargs: static call arguments (e.g. ``train=False``).
    variables: its variables.
    args: the positional inputs of one batch.
    sink: a host list receiving the moments of the layers under lifted transforms, one entry per call and slice
      (``lifted.send``); None: those layers are not measured.

  Returns:
    {path: (gram, abs_sum, count)} for the measured layers that were called in the model's own trace.
  """
  found: dict[str, tuple] = {}
  outer_trace = tracers.current_trace()

  def interceptor(next_fun, a, kw, context):
    module = context.module
    path = "/".join(module.path)
    if context.method_name == "__call__" and a and path in views:
      moments = layer_moments(module, a[0], views[path], (a, kw))
      if moments is None:
        pass
      elif not _lifted(module, outer_trace):
        found[path] = moments if path not in found else tuple(u + v for u, v in zip(found[path], moments))
      elif sink is not None:
        kernel = meta.unbox(module.get_variable("params", kinds.resolve(module).kernel_name))
        lifted.send(sink, path, moments, kernel)
    return next_fun(*a, **kw)

  with nn.intercept_methods(interceptor):
    model.apply(variables, *args, **call_kwargs)
  return found


def norm_scales(model: nn.Module, variables, args: tuple, views: Mapping[str, MatrixView],
                **call_kwargs) -> dict[str, np.ndarray]:
  """{layer path: a = γ/√(var + ε)} for each layer of ``views`` whose output goes straight into an ``nn.BatchNorm``
  (feature axis last): the per-channel factor the norm multiplies that layer's output error by at inference.

  Traced abstractly (``jax.eval_shape``) with every call intercepted; a layer output and the norm input are matched
  by identity, so an operation in between (an activation, a residual add) means no match.

  Args:
    model: the dense linen model.
    variables: its variables (the norms' ``scale`` params and ``batch_stats`` ``var`` are read).
    args: one batch of positional inputs.
    views: {layer path: ``MatrixView``}.
    **call_kwargs: static call arguments (e.g. ``train=False``).

  Returns:
    {layer path: (n,) float64 scale} for the matched layers.
  """
  outputs, pairs, alive = {}, {}, []

  def interceptor(next_fun, a, kw, context):
    y = next_fun(*a, **kw)
    module, path = context.module, "/".join(context.module.path)
    if context.method_name == "__call__" and path in views:
      outputs[id(y)] = path
      alive.append(y)
    elif (context.method_name == "__call__" and isinstance(module, nn.BatchNorm) and a and id(a[0]) in outputs
          and module.axis in (-1, a[0].ndim - 1)):
      pairs[outputs[id(a[0])]] = (path, module.epsilon, module.use_scale)
    return y

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda v, *x: model.apply(v, *x, **call_kwargs), variables, *args)
  scales = {}
  for path, (norm, eps, use_scale) in pairs.items():
    try:
      var = np.asarray(get_node(variables["batch_stats"], norm)["var"], np.float64)
      gamma = np.asarray(get_node(variables["params"], norm)["scale"], np.float64) if use_scale else 1.0
    except (KeyError, TypeError):
      continue
    if var.ndim != 1:  # a norm stacked by nn.scan / nn.vmap: per-slice output weights are not supported
      continue
    scales[path] = np.abs(gamma) / np.sqrt(var + eps)
  return scales


def _host(x) -> np.ndarray:
  """A (replicated) result on the host, gathered across processes when it is not fully addressable."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x), np.float64)
  return np.asarray(multihost_utils.process_allgather(x, tiled=True), np.float64)


def _kernel(params, path: str):
  """The kernel (or embedding) param at ``path`` of ``params``, unboxed, or None."""
  try:
    node = get_node(params, path)
  except (KeyError, TypeError):
    return None
  name = next((k for k in ("kernel", "embedding") if k in node), None)
  return None if name is None else meta.unbox(node[name])


def collect(model: nn.Module, variables, batches: Iterable, views: Mapping[str, MatrixView],
            **call_kwargs) -> dict[str, LayerStats]:
  """Each measured layer's ``LayerStats`` over ``batches`` (module doc), accumulated in float64 on the host.

  Args:
    model: the dense linen model (the one ``svdify`` converts; paths are its own).
    variables: its variables.
    batches: an iterable of batches: an array (the model's one input) or a tuple of positional inputs. Global
      ``jax.Array`` batches sharded over devices (and processes) are summed over all of them.
    views: {layer path: ``MatrixView``}, e.g. ``svdify(model).report(x).views``.
    **call_kwargs: static call arguments (e.g. ``train=False``).

  Returns:
    {layer path: ``LayerStats``} for the layers of ``views`` that have statistics (module doc).
  """
  sink: list = []
  step = jax.jit(functools.partial(batch_moments, model, dict(views), dict(call_kwargs), sink=sink))
  slices = lifted.Slices(functools.partial(_kernel, variables["params"]), views)
  total: dict[str, LayerStats] = {}
  for batch in batches:
    moments = step(variables, batch if isinstance(batch, tuple) else (batch,))
    for path, (gram, abs_sum, count) in moments.items():
      stats = LayerStats(_host(gram), _host(abs_sum), int(round(float(_host(count)))))
      total[path] = total[path] + stats if path in total else stats
    jax.effects_barrier()
    slices.add(sink)
    sink.clear()
  return {**total, **slices.stats()}


__all__ = ["layer_moments", "batch_moments", "norm_scales", "collect"]
