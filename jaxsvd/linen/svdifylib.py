"""Turn any linen model into its SVD form, without touching its code.

``svdify(model, ranks)`` is a linen module that runs ``model`` (sharing its scope: the param paths are the
model's own) with every linear layer intercepted (``nn.intercept_methods``): instead of its kernel the layer
holds U, s, V and applies U·diag(s)·Vᵀ. Which layers convert, as what matrix, is each layer class's kind
(``jaxsvd.linen.kinds``); how they run in SVD form is ``jaxsvd.linen.conversion``; the matrix views are
``jaxsvd.core.matrix_view``:

  nn.Dense (c, n), nn.Embed (vocab, features)   one matrix n × c (Embed's lookup and ``attend`` share it)
  nn.DenseGeneral (*batch, *in, *out)           ∏out × ∏in: input axes flattened × output axes flattened;
                                                one matrix per index of the batch_dims (a stacked layer)
  nn.Einsum                                     when its kernel is a matrix after grouping (else left dense)
  nn.Conv (1-D/2-D/3-D, grouped, dilated), nn.ConvTranspose, nn.ConvLocal    the channel view n × ∏k·c per
                                                group (2-D convs also 'spatial'); groups are a stack axis
Layers under ``nn.scan``/``nn.vmap`` get U (L, m, r), s (L, r), V (L, k, r); ``structure``, the regularizers,
``pruning.rank.prune``, ``decompose``, ``jaxsvd.deploy.merged_params`` and checkpoints treat them as one layer of one
rank.
Partitioning boxes (``nn.with_logical_partitioning``, ``nn.Partitioned``) carry over to U, s, V.

  svd_model = svdify(model, ranks={"Conv_1": 8}, skip=("Conv_0",), skip_pattern=r".*head.*")
  variables = svd_model.init(key, x, train=False)        # a linen module: also usable inside other modules
  svd_model.report(x, train=False)                       # converted vs left-dense layers, with reasons
  variables = decompose(svd_model, dense_variables, x)   # from a trained dense model (truncated SVD)
  svd_model = svd_model.with_ranks(new_ranks)            # after pruning: the architecture is (model, ranks)

Ranks and skip paths are relative to ``model`` ('/'-joined module names, as in its params).
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import warnings
from typing import Callable, Mapping

import flax.linen as nn
import jax
import numpy as np

from jaxsvd.core import registry, svd
from jaxsvd.core.matrix_view import MatrixView, describe
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.core.structure import stack_shapes, validate_ranks
from jaxsvd.core.validate import check_choice
from jaxsvd.linen import conversion, kinds

_SINK: contextvars.ContextVar = contextvars.ContextVar("svdify_report_sink", default=None)


@dataclasses.dataclass(frozen=True)
class ConversionReport:
  """What ``svdify`` did to a model: ``converted`` {path: ``conversion.Converted``}, ``dense`` {path: reason}
  (left dense although it is a linear layer) and ``skipped`` (paths the caller asked to keep dense)."""
  converted: dict[str, conversion.Converted]
  dense: dict[str, str]
  skipped: tuple[str, ...]
  views: dict[str, MatrixView]

  def __str__(self) -> str:
    rows = [f"  {p}: {c.kind} {c.matrix}, rank {c.rank}, {c.execution}" for p, c in self.converted.items()]
    rows += [f"  {p}: left dense: {reason}" for p, reason in self.dense.items()]
    rows += [f"  {p}: skipped" for p in self.skipped]
    return f"svdify: {len(self.converted)} layers converted, {len(self.dense)} left dense\n" + "\n".join(rows)


class SVDModel(nn.Module):
  """``model`` with its linear layers in SVD form; a linen module (``init``/``apply``/submodule use)."""

  model: nn.Module
  ranks: tuple[tuple[str, int], ...] = ()  # frozen {layer path: rank}; missing paths are full rank
  decomposition: str = "channel"
  mode: str = "auto"
  skip: tuple[str, ...] = ()  # layer paths kept dense
  skip_pattern: str | None = None  # regex: layers whose path fully matches it are kept dense
  skip_if: Callable[[str, nn.Module], bool] | None = None  # predicate (path, layer) → keep dense
  sigma: str = "signed"  # 'signed' | 'abs' (the official forward, see jaxsvd.core.svd)
  init_scheme: str = "svd_of_he"  # 'svd_of_he' | 'official' (not `init`: that is the method)

  def __post_init__(self):
    check_choice("svdify.decomposition", self.decomposition, svd.DECOMPOSITIONS)
    check_choice("svdify.mode", self.mode, svd.MODES)
    check_choice("svdify.sigma", self.sigma, svd.SIGMAS)
    check_choice("svdify.init", self.init_scheme, svd.INITS)
    validate_ranks(dict(self.ranks))
    if overlap := sorted(set(dict(self.ranks)) & set(self.skip)):
      raise ValueError(f"svdify: layers {overlap} are both in ranks and in skip")
    if self.skip_pattern is not None:
      re.compile(self.skip_pattern)
    super().__post_init__()

  def setup(self):
    nn.share_scope(self, self.model)

  def __call__(self, *args, **kwargs):
    """``model(*args, **kwargs)`` with the linear layers in SVD form.

    Raises:
      ValueError: if ``ranks`` names a layer that is not converted, a rank exceeds its layer's min(m, k), or no
        layer converts at all.
    """
    state = _CallState(self, len(self.path))
    with nn.intercept_methods(state.intercept):
      out = self.model(*args, **kwargs)
    state.finish(self.is_initializing())
    return out

  @nn.nowrap
  def with_ranks(self, ranks: Mapping[str, int]) -> SVDModel:
    """This model at new ranks ({layer path: rank}; missing paths are full rank), its other settings unchanged."""
    return self.clone(ranks=_frozen(ranks))

  @nn.nowrap
  def with_mode(self, mode: str) -> SVDModel:
    """This model with its native SVD layers run in execution mode ``mode`` (one of ``svd.MODES``)."""
    return self.clone(mode=mode)

  @nn.nowrap
  def skipped(self, path: str, module: nn.Module) -> bool:
    """Whether the layer at ``path`` is kept dense by ``skip``, ``skip_pattern`` or ``skip_if``."""
    return (path in self.skip or (self.skip_pattern is not None and re.fullmatch(self.skip_pattern, path) is not None)
            or (self.skip_if is not None and bool(self.skip_if(path, module))))

  @nn.nowrap
  def svd_layer(self, module: nn.Module) -> nn.Module:
    """The unbound zoo SVD layer a native layer (plain Dense / 2-D Conv) runs as (its kind's ``native_layer``),
    else ``module``.

    Args:
      module: a bound submodule of ``model``.

    Returns:
      A ``DenseSVD``/``ConvSVD`` with the layer's settings, rank and this model's mode and decomposition; ``module``
      itself for other layers or skipped ones.
    """
    path = (conversion.layer_path(module, self.model, len(self.path)) if self.scope is not None
            else "/".join(module.path))
    kind = kinds.resolve(module)
    if kind is None or self.skipped(path, module):
      return module
    return kind.native_layer(module, dict(self.ranks).get(path), self) or module

  @nn.nowrap
  def report(self, *args, **kwargs) -> ConversionReport:
    """Which layers convert (and as what matrices) and which stay dense and why, at these inputs (traced
    abstractly; array arguments are only shape-checked, others passed as they are, e.g. ``train=False``)."""
    return traced_init(self, *args, **kwargs)[0]

  @nn.nowrap
  def record(self, params, sample_input, **call_kwargs):
    """The architecture record of this model for ``checkpoint.save`` (kind ``user``, framework 'linen').

    Args:
      params: its params (ranks and stack shapes are read from them).
      sample_input: one batch of inputs (its shape without the batch axis and its dtype are stored).
      **call_kwargs: the static call arguments (JSON values) restore must call init with, e.g. ``train=False``.

    Returns:
      The ``record.Architecture``; ``checkpoint.restore(path, model=<the same module>)`` reads it back.
    """

    settings = {"decomposition": self.decomposition, "mode": self.mode, "skip": list(self.skip),
                "skip_pattern": self.skip_pattern, "sigma": self.sigma, "init": self.init_scheme}
    if self.skip_if is not None:
      raise ValueError("svdify: a model with skip_if (a function) cannot be recorded; use skip or skip_pattern")
    user = {"framework": "linen", "module": type(self.model).__qualname__, "svdify": settings,
            "call_kwargs": dict(call_kwargs), "input_dtype": str(np.dtype(sample_input.dtype)),
            "stack_shapes": {k: list(v) for k, v in stack_shapes(params).items()}}
    current = read_ranks(conversion.unbox_tree(params))
    return Architecture(model=type(self.model).__qualname__, num_classes=0,
                        input_shape=tuple(int(d) for d in np.shape(sample_input)[1:]), ranks=current,
                        original_ranks=current, user=user)


class _CallState:
  """The interceptor of one ``SVDModel.__call__`` and what it saw."""

  def __init__(self, svd_model: SVDModel, depth: int):
    self.svd_model, self.depth = svd_model, depth
    self.ranks = dict(svd_model.ranks)
    self.converted: dict[str, conversion.Converted] = {}
    self.dense: dict[str, str] = {}
    self.skipped: set[str] = set()
    self.views: dict[str, MatrixView] = {}
    self.active: set[int] = set()

  def intercept(self, next_fun, args, kwargs, context):
    module = context.module
    kind = kinds.resolve(module)
    if (kind is None or not isinstance(module, kind.layer) or id(module) in self.active
        or context.method_name not in ("__call__", "setup", "attend")):
      return next_fun(*args, **kwargs)
    path = conversion.layer_path(module, self.svd_model.model, self.depth)
    if self.svd_model.skipped(path, module):
      self.skipped.add(path)
      return next_fun(*args, **kwargs)
    if reason := kind.reason(module, args, kwargs):
      self.dense[path] = reason
      return next_fun(*args, **kwargs)
    x = args[0] if args else next(iter(kwargs.values()), None)
    if context.method_name == "__call__" and kind.native(module, x):
      rank = self.ranks.get(path)
      view, y = kind.native_call(module, x, rank, self.svd_model)
      self._record(path, module, view, rank, self.svd_model.mode)
      return y
    return self._kernel(module, path, kind, next_fun, args, kwargs)

  def _kernel(self, module, path, kind, next_fun, args, kwargs):
    own, requested = conversion.own_methods(module, kind.layer), []
    if own and not module.is_initializing() and not module.scope.has_variable("params", "U"):
      self.dense[path] = f"subclass {type(module).__name__} was left dense at init (see svd_model.report)"
      return next_fun(*args, **kwargs)
    execution = f"reconstruct (subclass {type(module).__name__}: kernel read through the param)" if own else \
      "reconstruct"

    def make_view(kernel_shape):
      view = kind.view(module, kernel_shape, self.svd_model.decomposition, (args, kwargs))
      if isinstance(view, str):
        raise _LeaveDense(view)
      requested.append(path)
      self._record(path, module, view, self.ranks.get(path), execution)
      return view

    def other_param(name):
      if own and (why := conversion.subclass_param_reason(module, name, kind.kernel_name, own)):
        raise _LeaveDense(why)

    self.active.add(id(module))
    try:
      with conversion.patched_param(module, kind.kernel_name, make_view, self.ranks.get(path), self.svd_model,
                                    other_param):
        out = next_fun(*args, **kwargs)
      if own and not requested:
        self.dense[path] = (f"subclass {type(module).__name__} never requests its {kind.kernel_name} "
                            "param (it bypasses the param), so U·diag(s)·Vᵀ would not be the map it applies")
      return out
    except _LeaveDense as leave:
      self.dense[path] = str(leave)
      self.converted.pop(path, None)
      for name in ("U", "s", "V") if requested and module.is_initializing() else ():
        module.scope._mutable_collection("params").pop(name, None)  # factors made before the refusal
      return next_fun(*args, **kwargs)
    finally:
      self.active.discard(id(module))

  def _record(self, path, module, view, rank, execution):
    self.views[path] = view
    self.converted[path] = conversion.Converted(type(module).__name__, describe(view), rank or view.full_rank,
                                                execution)

  def finish(self, initializing: bool):
    if unknown := sorted(set(self.ranks) - set(self.converted)):
      raise ValueError(f"svdify: ranks name layers {unknown} that are not converted layers of the model "
                       f"(converted: {sorted(self.converted)})")
    dense = {p: r for p, r in self.dense.items() if p not in self.converted}
    if not self.converted:
      raise ValueError(f"svdify: no layer of {type(self.svd_model.model).__name__} was converted "
                       f"(left dense: {dense or 'none'}; skipped: {sorted(self.skipped) or 'none'})")
    if initializing and dense:
      warnings.warn(f"svdify: layers left dense: {dense}", stacklevel=2)
    if (sink := _SINK.get()) is not None:
      sink.append(ConversionReport(dict(sorted(self.converted.items())), dict(sorted(dense.items())),
                                   tuple(sorted(self.skipped)), dict(self.views)))


class _LeaveDense(Exception):
  """Raised inside a layer's kernel request when its kernel has no matrix view (it is then run dense)."""


def svdify(model: nn.Module, ranks: Mapping[str, int] | None = None, decomposition: str = "channel",
           mode: str = "auto", skip: tuple[str, ...] | list[str] = (), skip_pattern: str | None = None,
           skip_if: Callable[[str, nn.Module], bool] | None = None, sigma: str = "signed",
           init: str = "svd_of_he") -> SVDModel:
  """``model`` with every linear layer (except those skipped) as U, s, V at ``ranks`` (default full).

  Args:
    model: any linen model.
    ranks: {layer path: rank}; missing paths (and None) mean full rank.
    decomposition: how 2-D conv kernels are matricized, one of ``svd.DECOMPOSITIONS``.
    mode: the native SVD layers' execution mode, one of ``svd.MODES``.
    skip: layer paths kept dense.
    skip_pattern: a regex; layers whose path matches it in full are kept dense.
    skip_if: a predicate ``(path, layer) -> bool``; layers for which it is True are kept dense.
    sigma: 'signed' (W = U·diag(s)·Vᵀ) or 'abs' (W = U·diag(|s|)·Vᵀ, the official forward; ``jaxsvd.core.svd``).
    init: 'svd_of_he' (the truncated SVD of the layer's own kernel init) or 'official' (``svd.official_init``'s
      variances on each matrix).

  Returns:
    The ``SVDModel`` (a linen module).

  Raises:
    ValueError: if ``decomposition``, ``mode``, ``sigma``, ``init``, a rank or ``skip_pattern`` is invalid, or a
      layer is both in ``ranks`` and in ``skip``.
    TypeError: if ``model`` is not a linen module (an ``nnx.Module``: ``jaxsvd.nnx.svdifylib`` converts those).
  """
  if not isinstance(model, nn.Module):
    raise TypeError(f"svdify: {type(model).__name__} is not a linen module; for an nnx.Module use "
                    "jaxsvd.nnx.svdifylib.svdify (NNX graph surgery)")
  return SVDModel(model, _frozen(ranks or {}), decomposition, mode, tuple(skip), skip_pattern, skip_if, sigma, init)


def from_record(architecture, module: nn.Module) -> SVDModel | nn.Module:
  """The linen model a user record describes (registered as 'user/linen'): ``svdify(module, ranks, ...)``.

  Args:
    architecture: the ``record.Architecture`` (its ``ranks`` and ``user['svdify']`` settings: decomposition, mode,
      skip, skip_pattern, sigma, init; records without sigma / init get 'signed' / 'svd_of_he').
    module: the dense linen model the record was made from.

  Returns:
    The ``SVDModel`` at the recorded ranks and settings, or ``module`` itself if ``user['svdify']`` is None.
  """
  settings = architecture.user["svdify"]
  if settings is None:
    return module
  return svdify(module, dict(architecture.ranks), settings["decomposition"], settings["mode"],
                tuple(settings.get("skip", ())), settings.get("skip_pattern"), sigma=settings.get("sigma", "signed"),
                init=settings.get("init", "svd_of_he"))


def _is_array(x) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, jax.ShapeDtypeStruct))


def abstract_init(model: nn.Module, *args, **kwargs):
  """``jax.eval_shape`` of ``model.init``: array arguments abstract, every other argument passed as it is.

  Args:
    model: the linen model.
    *args: its positional call arguments; array leaves (``jax.Array``, ``np.ndarray``, ``jax.ShapeDtypeStruct``)
      are traced abstractly, other leaves passed as they are.
    **kwargs: its keyword call arguments, treated the same way (e.g. ``train=False`` passed as it is).

  Returns:
    The variables ``model.init`` would return (initialized with ``jax.random.key(0)``), with
    ``jax.ShapeDtypeStruct`` leaves.
  """
  leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
  arrays = [leaf for leaf in leaves if _is_array(leaf)]

  def init(key, arrays):
    it = iter(arrays)
    args, kwargs = jax.tree_util.tree_unflatten(treedef, [next(it) if _is_array(x) else x for x in leaves])
    return model.init(key, *args, **kwargs)

  return jax.eval_shape(init, jax.random.key(0), arrays)


def traced_init(svd_model: SVDModel, *args, **kwargs) -> tuple[ConversionReport, dict]:
  """(the ``ConversionReport``, the abstract variables) of one abstract ``svd_model.init`` (``abstract_init``).

  Args:
    svd_model: the SVD model.
    *args: its positional call arguments (arrays only shape-checked), as for ``abstract_init``.
    **kwargs: its keyword call arguments (non-arrays, e.g. ``train=False``, passed as they are).

  Returns:
    (the ``ConversionReport`` of the last ``SVDModel`` call traced, the variables with ``jax.ShapeDtypeStruct``
    leaves).
  """
  sink: list = []
  token = _SINK.set(sink)
  try:
    abstract = abstract_init(svd_model, *args, **kwargs)
  finally:
    _SINK.reset(token)
  return sink[-1], abstract


def _frozen(ranks: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
  validate_ranks(dict(ranks))
  return tuple(sorted((str(k), v) for k, v in ranks.items()))


registry.register("user/linen", from_record)

__all__ = ["ConversionReport", "SVDModel", "svdify", "from_record", "abstract_init", "traced_init"]
