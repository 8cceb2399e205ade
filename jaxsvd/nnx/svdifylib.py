"""Flax NNX models in SVD form: in-place graph surgery, ranks, regularizers and pruning over ``nnx.State``.

  report = svdify(model, ranks={"blocks/0/attn/query": 8}, skip=("conv0",))  # in place; missing paths: full rank
  ranks(model)                                    # {layer path: r}, read from nnx.state(model, nnx.Param)
  loss = ce + regularization(model, RegularizerConfig(orthogonality=1.0, sparsity=1e-3))[0]
  small, new_ranks, prune_report = prune(model, Strategy("energy", energy=0.05))   # model itself unchanged

``svdify`` walks the module graph (modules, ``nnx.List``/``nnx.Dict``, lists/dicts/tuples held as ``nnx.data``) and
replaces every layer whose class has a kind (``jaxsvd.nnx.kinds``: ``nnx.Linear``, ``nnx.LinearGeneral``,
``nnx.Conv``, ``nnx.Embed``, ``nnx.Einsum`` (kernel a stack of matrices), ``nnx.ConvTranspose``, and registered ones)
of exactly that class by its kind's SVD layer, initialized with the truncated SVD of its kernel (at full rank the
model computes the same function). A subclass of these is converted in place, its kernel rebuilt from U, s, V where
its methods read it (reconstruct execution), when ``conversion``'s subclass rule holds. A module shared at several
places stays shared (tied weights stay tied). Every such layer is in the report once: converted (matrix view, rank,
execution) or left dense with the reason (per-batch kernels, dilation, groups, masks, custom dot/conv functions,
explicit precision, non-matrix einsums, 3-D convs, circular transposed convs, subclasses failing the rule);
converting nothing is an error.

A layer's path is the '/'-joined graph path (``nnx.iter_graph``; list indices as numbers), which is also its key in
``nnx.state(model).to_pure_dict()``: the library's pure functions on param dicts (``structure.ranks``,
``regularizers``, ``pruning.rank.prune``) run unchanged on that dict.

Pruning returns a new, smaller model: the input is merged into a copy (``nnx.merge(..., copy=True)``) and the copy's
U, s, V ``Param`` values are replaced by the pruned arrays in place. The SVD layers store no rank (it is
``s.shape[0]``), so the graph definition is unchanged and only the state's shapes shrink; ``nnx.jit`` retraces once.
An ``nnx.Optimizer`` holds moments of the old shapes: build a new one for the pruned model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flax import nnx
from flax.nnx import graph

from jaxsvd.core import structure, svd
from jaxsvd.core.validate import check_choice
from jaxsvd.nnx import conversion, kinds, surface
from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.pruning import rank as rank_pruning
from jaxsvd.training import losses

unsupported = conversion.unsupported


@dataclasses.dataclass(frozen=True)
class ConversionReport:
  """What ``svdify`` did: ``converted`` {path: 'Linear -> LinearSVD: 16 × 8, rank r of R, <execution>'} (matrix
  view, rank, execution), ``left`` {path: why it stays dense} for every linear-like layer not converted (each layer
  in exactly one of them), and ``ranks`` {path: r} of the converted layers. Data-aware conversion
  (``jaxsvd.nnx.calibration``) adds ``plain`` {path: why} for converted layers whose factors are the plain truncated
  SVD because they got no calibration statistics."""
  converted: dict[str, str]
  left: dict[str, str]
  ranks: dict[str, int]
  plain: dict[str, str] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    """One line: how many layers were converted, which were left dense, which got plain factors without data."""
    left = "; ".join(f"{p}: {why}" for p, why in self.left.items()) or "none"
    plain = "".join(f"; no statistics, plain factors: {p} ({why})" for p, why in self.plain.items())
    return f"svdify: converted {len(self.converted)} layers; left dense: {left}{plain}"


def svdify(model: nnx.Module, ranks: Mapping[str, int] | None = None, decomposition: str = "channel",
           mode: str = "auto", skip: Sequence[str] = (), skip_pattern: str | None = None,
           skip_if: Callable[[str, nnx.Module], bool] | None = None, sigma: str = "signed") -> ConversionReport:
  """Replaces, in place, every convertible layer of ``model`` by its SVD form (truncated SVD of its kernel).

  Args:
    model: an ``nnx.Module`` (modified in place).
    ranks: {layer path: rank}; missing paths (and None) mean full rank.
    decomposition: how conv kernels are matricized, 'channel' or 'spatial'.
    mode: the SVD layers' execution, 'reconstruct', 'factored' or 'auto'.
    skip: layer paths kept dense.
    skip_pattern: a regex; layers whose path matches it in full are kept dense.
    skip_if: a predicate ``(path, layer) -> bool``; layers for which it is True are kept dense.
    sigma: 'signed' (W = U·diag(s)·Vᵀ) or 'abs' (W = U·diag(|s|)·Vᵀ, the official forward; ``jaxsvd.core.svd``).
      The truncated SVD's s is ≥ 0, so both start as the same function.

  Returns:
    The ``ConversionReport``.

  Raises:
    TypeError: if ``model`` is not an ``nnx.Module`` (a linen module goes to ``jaxsvd.linen.svdifylib.svdify``).
    ValueError: on an invalid option or rank, a rank for a layer that is not converted, or if nothing converts.
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"jaxsvd.nnx.svdify: expected an nnx.Module, got {type(model).__name__}; "
                    "for a linen model use jaxsvd.linen.svdifylib.svdify")
  ranks = _checked_options(ranks, decomposition, mode, sigma)
  skipped = _skip_fn(skip, skip_pattern, skip_if)
  converted, left, memo, new_ranks = {}, {}, {}, {}

  def visit(path: str, module) -> Any:
    if id(module) in memo:  # a shared layer: decided at its first path
      return memo[id(module)]
    memo[id(module)] = None
    if skipped(path, module):
      left[path] = "in skip"
      if path in ranks:
        raise ValueError(f"svdify: layer {path!r} is both in ranks and in skip")
      return None
    if reasons := unsupported(module):
      left[path] = "; ".join(reasons)
      return None
    new, line = _convert(module, path, ranks.get(path), decomposition, mode, sigma)
    if new is None:
      left[path] = line
      return None
    converted[path], new_ranks[path] = line, new.rank
    memo[id(module)] = new
    return new

  _replace_in_graph(model, (), visit, set())
  if unknown := sorted(set(ranks) - set(converted)):
    raise ValueError(f"svdify: ranks name layers {unknown} that were not converted (converted: {sorted(converted)})")
  report = ConversionReport(converted, left, {p: new_ranks[p] for p in converted})
  if not converted:
    raise ValueError(f"svdify: no layer of {type(model).__name__} was converted ({report.summary()})")
  return report


def _convert(module, path: str, rank, decomposition: str, mode: str, sigma: str):
  """(the converted layer, its report line) or (None, why it stays dense) for a layer ``unsupported`` accepts."""
  kind, view = type(module).__name__, conversion.kernel_view(module, decomposition)
  if type(module) is kinds.resolve(module).layer:
    new, execution = to_svd(module, rank, decomposition, mode, path, sigma), mode
  else:
    new, reasons = conversion.subclass_to_svd(module, rank, decomposition, mode, sigma, path)
    if new is None:
      return None, "; ".join(reasons)
    execution = f"reconstruct (subclass {kind}: kernel read through the param)"
  return new, conversion.describe_layer(kind, new, view, execution)


def _checked_options(ranks, decomposition: str, mode: str, sigma: str) -> dict[str, int]:
  nnx_layers.require_flax_nnx()
  check_choice("svdify.decomposition", decomposition, svd.DECOMPOSITIONS)
  check_choice("svdify.mode", mode, svd.MODES)
  check_choice("svdify.sigma", sigma, svd.SIGMAS)
  ranks = dict(ranks or {})
  structure.validate_ranks(ranks)
  return ranks


def _skip_fn(skip, skip_pattern, skip_if) -> Callable[[str, Any], bool]:
  try:
    pattern = None if skip_pattern is None else re.compile(skip_pattern)
  except re.error as err:
    raise ValueError(f"svdify: skip_pattern={skip_pattern!r} is not a regex: {err}") from None
  paths = set(skip)
  return lambda path, layer: (path in paths or bool(pattern and pattern.fullmatch(path))
                              or bool(skip_if and skip_if(path, layer)))


def to_svd(module, rank: int | None, decomposition: str = "channel", mode: str = "auto", path: str = "layer",
           sigma: str = "signed"):
  """The SVD layer computing ``module``'s function from the truncated SVD of its kernel: its kind's ``to_svd``
  (``module`` of exactly a kind's class, ``unsupported`` empty).

  Args:
    module: e.g. an ``nnx.Linear``, ``nnx.LinearGeneral``, ``nnx.Conv``, ``nnx.Embed``, ``nnx.Einsum`` or
      ``nnx.ConvTranspose``.
    rank: r, or None for full rank.
    decomposition: the conv matrix view.
    mode: the execution mode.
    path: the layer's path, named in errors.
    sigma: 'signed' or 'abs' (``svdify``).

  Returns:
    The kind's SVD layer (``LinearSVD``, ``LinearGeneralSVD``, ``ConvSVD``, ``EmbedSVD``, ``EinsumSVD``,
    ``ConvTransposeSVD``, ...), with ``module``'s surface (``surface``: its kernel readable as U·diag(s)·Vᵀ, its
    plain configuration attributes kept).

  Raises:
    ValueError: if ``rank`` exceeds the matrix view's full rank.
  """
  try:
    return surface.keep_configuration(module, kinds.resolve(module).to_svd(module, rank, decomposition, mode, sigma))
  except ValueError as err:
    raise ValueError(f"svdify: layer {path!r}: {err}") from None


def _replace_in_graph(node, path: tuple, visit, seen: set[int]):
  """Walks ``node``'s children; a layer with a kind is replaced by ``visit``'s result (unless None), other graph
  nodes are searched (each once). Mutable nodes are updated in place; a dict/list/tuple is rebuilt and returned."""
  impl = graph.get_node_impl(node)
  if impl is None:
    return node
  changes, layer_classes = {}, kinds.layer_classes()
  for key, child in list(impl.node_dict(node).items()):
    child_path = (*path, key)
    if isinstance(child, layer_classes):
      new = visit("/".join(map(str, child_path)), child)
    elif isinstance(child, nnx.Variable) or not graph.is_node(child) or id(child) in seen:
      continue
    else:
      if graph.is_graph_node(child):
        seen.add(id(child))
      new = _replace_in_graph(child, child_path, visit, seen)
    if new is not None and new is not child:
      changes[key] = new
  if not changes:
    return node
  if impl.set_key is not None:
    for key, new in changes.items():
      impl.set_key(node, key, new)
    return node
  return _rebuilt(node, changes, path)


def _rebuilt(node, changes: dict, path: tuple):
  if isinstance(node, dict):
    return {**node, **changes}
  if isinstance(node, (list, tuple)):
    items = [changes.get(i, v) for i, v in enumerate(node)]
    return type(node)(*items) if hasattr(node, "_fields") else type(node)(items)
  raise ValueError(f"svdify: cannot replace layers inside a {type(node).__name__} at {'/'.join(map(str, path))!r}")


# ---- the architecture and the regularizers, read from nnx.State ----

def params_dict(model_or_state) -> dict:
  """The ``nnx.Param`` values as a pure nested dict (what the library's functions on params take).

  Args:
    model_or_state: an ``nnx.Module``, an ``nnx.State`` or a (graphdef, state) pair.

  Returns:
    ``nnx.state(model, nnx.Param).to_pure_dict()`` (or the state's Param part).
  """
  if isinstance(model_or_state, nnx.Module):
    return nnx.state(model_or_state, nnx.Param).to_pure_dict()
  state = model_or_state[1] if isinstance(model_or_state, tuple) else model_or_state
  return state.filter(nnx.Param).to_pure_dict()


def ranks(model_or_state) -> dict[str, int]:
  """{SVD layer path: rank}, read from the shapes of the ``s`` params (``structure.ranks``).

  Args:
    model_or_state: an ``nnx.Module``, an ``nnx.State`` or a (graphdef, state) pair (``params_dict``).

  Returns:
    {'/'-joined SVD layer path: r}.
  """
  return structure.ranks(params_dict(model_or_state))


def regularization(model_or_state, reg: losses.RegularizerConfig):
  """(λo·Σ orthogonality + λs·Σ sparsity + λ₂·½‖θ‖², unweighted terms) over the model's params
  (``losses.regularization``): differentiable inside ``nnx.grad``/``nnx.value_and_grad``.

  Args:
    model_or_state: an ``nnx.Module``, an ``nnx.State`` or a (graphdef, state) pair (only ``nnx.Param`` values
      are used).
    reg: the weights λo, λs, λ₂ and the sparsity type (``losses.RegularizerConfig``; ``reg.every`` is not used).

  Returns:
    (total, metrics): the scalar total and the unweighted terms present among {'orth', 'sparsity', 'l2'} (terms
    whose λ is 0 are left out).
  """
  return losses.regularization(params_dict(model_or_state), reg)


def svd_modules(model: nnx.Module) -> dict[str, nnx.Module]:
  """{path: SVD layer} of every converted layer in ``model`` (each shared layer once).

  Args:
    model: the NNX model (typically svdified).

  Returns:
    {'/'-joined graph path (``nnx.iter_graph``, list indices as numbers): layer} of every instance of
    ``jaxsvd.nnx.conversion.svd_layer_classes()``, in graph order (empty if there is none).
  """
  classes = conversion.svd_layer_classes()
  return {"/".join(map(str, p)): m for p, m in nnx.iter_graph(model) if isinstance(m, classes)}


def prune(model_or_split, strategy: rank_pruning.Strategy, floors: rank_pruning.Floors = rank_pruning.Floors(),
          original_ranks: Mapping[str, int] | None = None):
  """Rank pruning as a pure transformation: a new, smaller model; the input is not modified.

  Args:
    model_or_split: an svdified ``nnx.Module`` or its (graphdef, state) from ``nnx.split``.
    strategy: how many directions each SVD layer keeps (``pruning.rank.Strategy``).
    floors: lower bounds on the kept ranks.
    original_ranks: {layer path: rank at init} for ``floors.min_decay``.

  Returns:
    (new_model, new_ranks {path: rank}, ``pruning.rank.PruneReport``); ``nnx.split(new_model)`` gives the new
    (graphdef, state).

  Raises:
    ValueError: if the model has no SVD layer, or naming a layer whose s holds NaN/Inf.
  """
  graphdef, state = (nnx.split(model_or_split) if isinstance(model_or_split, nnx.Module) else model_or_split)
  params = params_dict(state)
  if not structure.ranks(params):
    raise ValueError("prune: the model has no SVD layers (run jaxsvd.nnx.svdify first)")
  new_params, new_ranks, report = rank_pruning.prune(params, strategy, floors, original_ranks)
  model = nnx.merge(graphdef, state, copy=True)
  modules = svd_modules(model)
  for path, layer in report.layers.items():
    if layer.old_rank != layer.new_rank:
      node = structure.svd_layers(new_params)[path]
      for name in ("U", "s", "V"):
        getattr(modules[path], name).set_value(node[name])
  return model, new_ranks, report


def svdified(constructor: Callable[..., nnx.Module], ranks: Mapping[str, int] | None = None,
             decomposition: str = "channel", mode: str = "auto", only_ranked: bool = False,
             sigma: str = "signed", **skips) -> Callable[..., nnx.Module]:
  """A constructor of the svdified model: ``constructor(*args, **kwargs)`` then ``svdify`` at ``ranks``.

  Use it where NNX wants a class-like constructor: ``nnx.eval_shape`` (abstract model to restore a checkpoint into)
  and ``nnx.bridge.ToLinen`` (the SVD model inside a linen model).

  Args:
    constructor: builds the dense nnx model (e.g. the model class).
    ranks, decomposition, mode, sigma: as ``svdify``.
    only_ranked: convert exactly the layers named in ``ranks`` (how a saved architecture is rebuilt: its ranks
      name every converted layer).
    **skips: ``skip``, ``skip_pattern``, ``skip_if`` as ``svdify``.

  Returns:
    A function with ``constructor``'s signature returning the svdified model.
  """
  def build(*args, **kwargs):
    model = constructor(*args, **kwargs)
    if only_ranked:
      skips["skip_if"] = lambda path, _: path not in ranks
    svdify(model, ranks, decomposition, mode, sigma=sigma, **skips)
    return model
  return build


__all__ = ["ConversionReport", "svdify", "unsupported", "to_svd", "params_dict",
           "ranks", "regularization", "svd_modules", "prune", "svdified"]
