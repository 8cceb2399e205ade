"""Data-aware SVD for Flax NNX models: calibration statistics, ``svdify`` with whitened / activation factors, and
``compress`` to a params budget (the NNX twin of ``jaxsvd.linen.calibration`` and ``jaxsvd.linen.compress``).

  stats, views = collect(model, batches)                     # the dense model, run on the batches
  report = svdify(model, batches, ranks={...}, method="whitened")   # in place, like jaxsvd.nnx.svdify
  report, ranks = compress(model, batches, method="whitened", params_reduction=2.0)

Statistics (``core.calibration``, in the matrix view of each layer the NNX SVD layers use) are each layer kind's
``moments`` (``jaxsvd.nnx.kinds``): ``nnx.Linear`` its input features, ``nnx.LinearGeneral`` the ``axis`` dims
flattened in order, ``nnx.Conv`` the im2col patches (channel) or kh·c column patches (2-D spatial),
``nnx.ConvTranspose`` the windows of its dilated input, ``nnx.Embed`` token counts, ``nnx.Einsum`` its contracted
input letters per stack index (``calibration.einsum_rows``). ``collect`` swaps the class of each measured layer of
this model (graph surgery, as ``svdify``; restored afterwards; no flax class is patched) for a subclass whose flax
parent's ``__call__`` also hands out its input's moments, runs the model on each batch under ``nnx.jit``
(``jit=False``: eagerly), and accumulates in float64 on the host. Research models take keyword inputs: pass
``forward(model, batch)``. A user's subclass of a layer (Gemma's scaled ``nnx.Embed``, a Linear with its own
``__call__``) that the subclass rule lets ``svdify`` convert (``jaxsvd.nnx.conversion``) is measured where its
methods hand their input to the parent's ``__call__`` (``super().__call__(y)``: y is what the kernel multiplies,
whatever the subclass did before); one whose call never gets there (it applies the kernel itself) gets no
statistics. Layers ``svdify`` leaves dense are not measured; a converted layer without statistics (such a
subclass, a conv with 'CIRCULAR'/'REFLECT'/'CAUSAL' padding, a layer under ``nnx.scan``/``nnx.vmap``, one the
batches never call) gets plain factors and is named, with the reason, in the report's ``plain`` and a warning.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import tracers

from jaxsvd.core import calibration
from jaxsvd.core.calibration import LayerStats
from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.nnx import conversion, kinds, svdifylib
from jaxsvd.pruning import budget
from jaxsvd.pruning import compress as compress_lib
from jaxsvd.pruning.rank import Floors


def _layers(model: nnx.Module, decomposition: str) -> dict:
  """{path: (module, view)} of the layers of a ``calibrated`` kind ``svdify`` would convert: exactly its class, or
  a subclass the subclass rule admits (``conversion.subclass_reasons`` empty)."""
  found = {}
  for path, module in nnx.iter_graph(model):
    kind = kinds.resolve(module)
    if kind is None or not kind.calibrated or svdifylib.unsupported(module):
      continue
    if type(module) is not kind.layer and conversion.subclass_reasons(module):
      continue
    found.setdefault(id(module), ("/".join(map(str, path)), module, kind.view(module, decomposition)))
  return {p: (m, v) for p, m, v in found.values()}


def collect(model: nnx.Module, batches: Iterable, decomposition: str = "channel", forward: Callable | None = None,
            jit: bool = True):
  """Each convertible layer's ``LayerStats`` over ``batches`` (module doc), and the layers' views.

  Args:
    model: the dense NNX model (unchanged; in eval mode if it has dropout / batch norm).
    batches: arrays (the model's one input) or tuples of positional inputs; with ``forward``, anything it takes.
    decomposition: the conv view.
    forward: ``forward(model, batch)`` runs the model on one batch (keyword inputs such as ``positions=``,
      ``attention_mask=``); None: ``model(*batch)``.
    jit: run each batch under ``nnx.jit`` (one compile per batch shape); False: eagerly (a model whose call
      cannot be traced).

  Returns:
    ({path: ``LayerStats``}, {path: ``MatrixView``}).
  """
  stats, views, _ = _collect(model, batches, decomposition, forward, jit)
  return stats, views


def _measuring_class(cls: type, base: type, path: str, view: MatrixView, sink: dict, outer: list) -> type:
  """The class a measured layer of class ``cls`` gets while measuring: its flax class ``base`` (its kind's
  ``layer``)'s ``__call__`` also adds (an empty array of the input's shape, the input's moments) to
  ``sink[path]`` — only when it runs in the trace of the whole forward (``outer[0]``): a layer under a lifted
  transform (``nnx.scan``, ``nnx.vmap``, ``nnx.remat``) cannot hand values out of its own trace.

  For ``cls`` the flax class itself that is a subclass of it with the measuring ``__call__``. For a user subclass it
  is ``type(name, (cls, measured parent))``, whose MRO puts the measuring call between ``cls`` and the parent: the
  subclass's own methods run unchanged and what is measured is what they hand to the parent's ``__call__`` (via
  ``super()``), the vectors the kernel multiplies; a subclass that never calls it gets no statistics.
  """

  def __call__(self, x, *args, **kwargs):
    if tracers.current_trace() == outer[0]:
      moments = kinds.resolve(self).moments(self, jnp.asarray(x), view)
      sink.setdefault(path, []).append((jnp.zeros((0, *jnp.shape(x))), moments))
    return base.__call__(self, x, *args, **kwargs)

  measured = type(f"{base.__name__}Measured", (base,), {"__call__": __call__, "__module__": base.__module__})
  if cls is base:
    return measured
  return type(f"{cls.__name__}Measured", (cls, measured), {"__module__": cls.__module__})


def _collect(model, batches, decomposition, forward, jit: bool = True):
  """``collect``'s statistics and views, and {path: [input shape of each call]}: each measured layer's class is
  swapped, on this model only, for a ``_measuring_class`` (graph surgery; restored afterwards), and one function
  of (model, batch) returns every call's moments, summed on the host in float64."""
  layers = _layers(model, decomposition)
  sink: dict[str, list] = {}
  outer: list = [None]
  call = forward or (lambda m, batch: m(*(batch if isinstance(batch, tuple) else (batch,))))

  def run(model, batch):
    sink.clear()
    outer[0] = tracers.current_trace()
    call(model, batch)
    return {p: ([z for z, _ in calls], [m for _, m in calls if m is not None]) for p, calls in sink.items()}

  step = nnx.jit(run) if jit else run
  classes = {p: type(m) for p, (m, _) in layers.items()}
  shapes: dict[str, list] = {p: [] for p in layers}
  total: dict[str, LayerStats] = {}
  try:
    for path, (module, view) in layers.items():
      module.__class__ = _measuring_class(classes[path], kinds.resolve(module).layer, path, view, sink, outer)
    for batch in batches:
      for path, (calls, moments) in step(model, batch).items():
        shapes[path] += [tuple(z.shape[1:]) for z in calls]
        for g, a, n in moments:
          stats = LayerStats(*(np.asarray(jax.device_get(v), np.float64) for v in (g, a)), int(round(float(n))))
          total[path] = total[path] + stats if path in total else stats
  finally:
    for path, (module, _) in layers.items():
      module.__class__ = classes[path]
  return total, {p: v for p, (_, v) in layers.items()}, shapes


def macs_counter(layers: Mapping, shapes: Mapping[str, list]) -> budget.MacsCounter:
  """The MACs of the converted layers over the recorded calls: layer l costs min(dense_l, r·factored_l(1)), summed
  over its calls (its kind's ``macs``); other operations (attention scores, norms) are not counted.

  Args:
    layers: {path: (module, view)} of the measured dense layers.
    shapes: {path: [input shape of each call]}.

  Returns:
    The ``budget.MacsCounter`` (per the calibration batches; the allocation compares ratios only).
  """
  costs = {}
  for path, (module, _) in layers.items():
    kind = kinds.resolve(module)
    per_call = [(kind.macs(module, shape)["dense"], kind.macs(module, shape, rank=1)["factored"])
                for shape in shapes.get(path, [])]
    costs[path] = (sum(d for d, _ in per_call), sum(f for _, f in per_call))
  return budget.MacsCounter.from_layers(costs)


def _kernel(module, view: MatrixView):
  return jnp.reshape(getattr(module, kinds.resolve(module).kernel_name)[...], view.kernel_shape)


def svdify(model: nnx.Module, batches: Iterable, ranks: Mapping[str, int] | None = None, method: str = "whitened",
           alpha: float = 0.5, decomposition: str = "channel", forward: Callable | None = None, jit: bool = True,
           **svdify_kwargs) -> svdifylib.ConversionReport:
  """``jaxsvd.nnx.svdify`` in place, each converted layer's factors then set by ``method`` on ``batches``' statistics.

  Args:
    model: the dense NNX model (modified in place).
    batches: calibration batches (as ``collect``).
    ranks: {layer path: rank}; missing: full rank.
    method: 'plain', 'activation' or 'whitened' (``core.calibration``).
    alpha: the activation method's α.
    decomposition: the conv view.
    forward, jit: as ``collect``.
    **svdify_kwargs: ``mode``, ``skip``, ``skip_pattern``, ``skip_if``, ``sigma`` of ``jaxsvd.nnx.svdify``.

  Returns:
    The ``ConversionReport`` of ``jaxsvd.nnx.svdify``, with ``plain`` {path: why} naming each converted layer that
    got no statistics (its factors are plain; also a warning).
  """
  calibration.input_scaling(None, method, alpha)
  stats, views = collect(model, batches, decomposition, forward, jit)
  layers = _layers(model, decomposition)
  kernels = {p: _kernel(m, views[p]) for p, (m, _) in layers.items()}
  report = svdifylib.svdify(model, ranks, decomposition, **svdify_kwargs)
  modules = svdifylib.svd_modules(model)
  plain = {}
  for path in report.ranks if method != "plain" else ():
    if path not in kernels or path not in stats:
      plain[path] = _why_no_statistics(path, layers)
      continue
    layer = modules[path]
    U, s, V = calibration.layer_factors(kernels[path], views[path], layer.rank, method, stats[path], alpha)
    for name, value in zip(("U", "s", "V"), (U, s, V)):
      getattr(layer, name).set_value(value.reshape(getattr(layer, name).shape).astype(getattr(layer, name).dtype))
  if plain:
    warnings.warn(f"jaxsvd.nnx.calibration: {method} factors need statistics; plain factors for {plain}",
                  stacklevel=2)
  return dataclasses.replace(report, plain=plain)


def _why_no_statistics(path: str, layers: Mapping) -> str:
  """Why a converted layer got no statistics: not a measured layer (a kind without ``moments``), a subclass whose
  call never reached its flax parent's ``__call__`` (it multiplies the kernel another way, so the vectors the kernel
  multiplies are unknown), or never called by the calibration batches."""
  if path not in layers:
    return "its class is not measured (a kind without statistics, or a subclass the subclass rule leaves out)"
  module = layers[path][0]
  kind = kinds.resolve(module)
  if type(module) is not kind.layer:
    return (f"subclass {type(module).__name__}'s call never reached {kind.name}.__call__ on the calibration batches "
            f"(it applies its {kind.kernel_name} another way), so the vectors the {kind.kernel_name} multiplies are "
            "unknown")
  return "the calibration batches never called it (or its kind has no statistics for this layer)"


def compress(model: nnx.Module, batches: Iterable, method: str = "whitened", params_reduction: float | None = None,
             alpha: float = 0.5, floors: Floors = Floors(), decomposition: str = "channel",
             forward: Callable | None = None, macs_reduction: float | None = None, jit: bool = True,
             **svdify_kwargs) -> tuple[svdifylib.ConversionReport, dict[str, int]]:
  """The model in SVD form (in place) with its converted layers at ≤ their dense params / ``params_reduction`` (or
  their dense MACs on the batches / ``macs_reduction``: ``macs_counter``), ranks allocated by ``method``'s error
  spectra (``jaxsvd.pruning.compress.allocate``) and factors by ``method``.

  Args:
    model: the dense NNX model (modified in place).
    batches: calibration batches (a list: it is read twice).
    method: 'plain', 'activation' or 'whitened'.
    params_reduction: X ≥ 1 (None and no ``macs_reduction``: 2).
    alpha: the activation method's α.
    floors: lower bounds on every rank.
    decomposition: the conv view.
    forward, jit: as ``collect``.
    macs_reduction: X ≥ 1 for a MACs budget instead (not with ``params_reduction``).
    **svdify_kwargs: as ``svdify``.

  Returns:
    (the ``ConversionReport``, the ranks {path: r}).

  Raises:
    ValueError: if both reductions are given or one is not a number ≥ 1.
  """
  reduction = _reduction(params_reduction, macs_reduction)
  batches = list(batches)
  stats, views, shapes = _collect(model, batches, decomposition, forward, jit)
  layers = _layers(model, decomposition)
  sigma = {p: calibration.spectrum(np.asarray(views[p].to_matrix(_kernel(m, views[p]))),
                                   calibration.input_scaling(stats.get(p), method, alpha))
           for p, (m, _) in layers.items()}
  counter = compress_lib.params_counter(views) if macs_reduction is None else macs_counter(layers, shapes)
  ranks = compress_lib.allocate(sigma, counter, reduction, floors)
  skip_if = svdify_kwargs.pop("skip_if", None)
  only = lambda path, module: path not in ranks or bool(skip_if and skip_if(path, module))  # noqa: E731
  report = svdify(model, batches, ranks, method, alpha, decomposition, forward, jit, skip_if=only, **svdify_kwargs)
  return report, ranks


def _reduction(params_reduction, macs_reduction) -> float:
  """The budget's X (one-line errors naming the argument)."""
  if params_reduction is not None and macs_reduction is not None:
    raise ValueError("compress: give params_reduction or macs_reduction, not both")
  name, value = (("macs_reduction", macs_reduction) if macs_reduction is not None
                 else ("params_reduction", 2.0 if params_reduction is None else params_reduction))
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
    raise ValueError(f"compress: {name} must be a number >= 1, got {value!r}")
  return float(value)


__all__ = ["collect", "macs_counter", "svdify", "compress"]
