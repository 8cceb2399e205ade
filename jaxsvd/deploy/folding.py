"""Inference graph rewriting: every BatchNorm folded into the layer before it, each SVD layer's execution fixed.

``fold(model, variables, x)`` traces the model once (``nn.intercept_methods``) and finds every linear layer whose
kind has a ``deploy_geometry`` (``jaxsvd.linen.kinds``: ``nn.Dense``, 2-D ``nn.Conv``, ``DenseSVD``, ``ConvSVD``, and
the layers an ``svdify`` model holds as U, s, V)
and every ``nn.BatchNorm``. A BatchNorm whose input *is* a linear layer's output (the same traced array) is
folded into that layer; with a = γ / √(σ² + ε) per output channel j,

    BN(W x + c) = (W·diag(a)) x + (a ⊙ c + β − a ⊙ μ)

so a dense kernel is scaled along its output axis and an SVD layer W = U·diag(s)·Vᵀ gets U' = diag(a)·U — the
output-side (second) factor; for the spatial view, whose rows are (w, j), a is tiled over the kw column taps.
A BatchNorm behind anything else (or in train mode) is left as it is.

The folded model runs as the original model's ``apply`` with every linear layer and every folded BatchNorm
intercepted: a layer computes from its deploy weights, either 'merged' (one conv/matmul with the rebuilt kernel,
computed once here, not per call) or 'factored' (V·diag(s) as a kh×kw conv to r channels, then U' as a 1×1
conv — for 'spatial' a kh×1 then a 1×kw conv), plus the folded bias; a folded BatchNorm returns its input. The
plan {layer path: 'merged' | 'factored'} is data: ``Folded.plan('auto')`` picks by channel-quantized MACs,
``jaxsvd.deploy.artifact`` by measuring. Anything else in the model (pooling, residual adds, unfolded norms, params of
other modules) runs unchanged from the ``rest`` variables.
Limitation: a folded layer's output must feed only its BatchNorm (true for the zoo and the usual conv-BN-ReLU).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core import factors
from jaxsvd.core.matrix_view import infer_decomposition
from jaxsvd.core.tree import get_node, leaves_by_path
from jaxsvd.core.validate import check_choice
from jaxsvd.linen import kinds
from jaxsvd.linen.svdifylib import SVDModel

EXECUTIONS = ("merged", "factored")
PLAN_RULES = ("auto", "merged", "factored")


@dataclasses.dataclass(frozen=True)
class Site:
  """A linear layer as traced: its '/'-joined ``path``, dense ``kernel_shape`` ((c, n) or (kh, kw, c, n)),
  ``strides`` and explicit ``pads`` (None for a dense layer), ``decomposition`` (None: it holds a dense kernel),
  whether it has a bias, one example's input shape, and the BatchNorm folded into it (None: none)."""
  path: str
  kernel_shape: tuple[int, ...]
  strides: tuple[int, int] | None
  pads: tuple[tuple[int, int], ...] | None
  decomposition: str | None
  use_bias: bool
  in_shape: tuple[int, ...]
  norm: str | None = None

  def macs(self, rank: int | None, quantum: int = 1) -> dict[str, int]:
    """MACs per example of the 'merged' and 'factored' executions (``factors.conv_macs`` / ``dense_macs``)."""
    if self.strides is None:
      batch = int(np.prod(self.in_shape[:-1]))
      costs = factors.dense_macs(batch, *self.kernel_shape, rank or 1, quantum)
    else:
      costs = factors.conv_macs(1, self.in_shape[:2], self.kernel_shape, self.strides, self.pads, rank or 1,
                                self.decomposition or "channel", quantum)
    return {"merged": costs["dense"], "factored": costs["factored"] if rank else costs["dense"]}


@dataclasses.dataclass(frozen=True)
class _Norm:
  path: str
  producer: str | None
  epsilon: float
  use_scale: bool
  use_bias: bool


def _site(module, path: str, x, params) -> Site | None:
  """The layer's ``Site`` from its kind's ``deploy_geometry``, or None for what the deploy path does not rewrite (it
  then runs unchanged)."""
  kind = kinds.resolve(module)
  geometry = None if kind is None else kind.deploy_geometry(module, x)
  if geometry is None:
    return None
  kernel_shape, strides, pads = geometry
  node, decomposition = get_node(params, path), None
  if "U" in node:
    decomposition = "channel" if strides is None else (getattr(module, "decomposition", None)
                                                       or infer_decomposition(node["U"], node["V"], kernel_shape))
  return Site(path, tuple(kernel_shape), strides, pads, decomposition, module.use_bias, tuple(x.shape[1:]))


def _trace(model, variables, x, apply_kwargs) -> tuple[dict[str, Site], dict[str, _Norm]]:
  """Every rewritable linear layer and every BatchNorm, with the layer each BatchNorm directly follows."""
  sites, norms, outputs = {}, {}, {}

  def interceptor(next_fun, args, kwargs, context):
    module, path = context.module, "/".join(context.module.path)
    if context.method_name != "__call__" or not (isinstance(module, nn.BatchNorm) or kinds.resolve(module)):
      return next_fun(*args, **kwargs)
    inputs = args[0] if args else next(iter(kwargs.values()))
    if isinstance(module, nn.BatchNorm):
      running = args[1] if len(args) > 1 else kwargs.get("use_running_average")
      norms[path] = _norm_site(module, path, inputs, running, outputs)
      return next_fun(*args, **kwargs)
    out = next_fun(*args, **kwargs)
    if path in sites:
      raise ValueError(f"deploy: layer {path!r} is called more than once; shared layers cannot be folded")
    site = _site(module, path, inputs, variables["params"])
    if site is not None:
      sites[path] = site
      outputs[id(out)] = (path, out)
    return out

  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda v, x: model.apply(v, x, **apply_kwargs), variables, x)
  return sites, norms


def _norm_site(module: nn.BatchNorm, path: str, inputs, running_arg, outputs) -> _Norm:
  running = nn.merge_param("use_running_average", module.use_running_average, running_arg)
  if not running:
    raise ValueError(f"deploy: BatchNorm {path!r} normalizes with batch statistics (train mode); "
                     "fold the model as it runs at eval (e.g. train=False)")
  producer = outputs.get(id(inputs))
  folds = producer is not None and producer[1] is inputs and module.axis in (-1, inputs.ndim - 1)
  return _Norm(path, producer[0] if folds else None, module.epsilon, module.use_scale, module.use_bias)


def _affine(variables, norm: _Norm) -> tuple[np.ndarray, np.ndarray]:
  """(a, shift) with BN(y) = a ⊙ y + shift at the running statistics, in float64."""
  stats = get_node(variables["batch_stats"], norm.path)
  mean, var = (np.asarray(stats[k], np.float64) for k in ("mean", "var"))
  params = get_node(variables["params"], norm.path) if (norm.use_scale or norm.use_bias) else {}
  scale = np.asarray(params["scale"], np.float64) if norm.use_scale else 1.0
  bias = np.asarray(params["bias"], np.float64) if norm.use_bias else 0.0
  a = scale / np.sqrt(var + norm.epsilon)
  return a, bias - a * mean


def _fold_layer(site: Site, node: Mapping, a: np.ndarray | None, shift: np.ndarray | None) -> dict[str, np.ndarray]:
  """The layer's canonical folded weights (float64): {'kernel'} or {'U', 's', 'V'}, plus 'bias' if any."""
  n = site.kernel_shape[-1]
  bias = np.asarray(node["bias"], np.float64) if site.use_bias else np.zeros(n)
  if site.decomposition is None:
    out = {"kernel": np.asarray(node["kernel"], np.float64)}
  else:
    out = {k: np.asarray(node[k], np.float64) for k in ("U", "s", "V")}
  if a is not None:
    if site.decomposition is None:
      out["kernel"] = out["kernel"] * a
    else:  # U rows are output channels j ('channel') or (w, j) ('spatial', w the column tap)
      out["U"] = out["U"] * np.tile(a, out["U"].shape[0] // n)[:, None]
    bias = a * bias + shift
  if site.use_bias or a is not None:
    out["bias"] = bias
  return out


def execution_weights(site: Site, w: Mapping[str, np.ndarray], execution: str) -> dict[str, np.ndarray]:
  """The arrays one execution runs on: {'kernel'} ('merged') or {'first', 'second'} ('factored'), + 'bias'.

  Args:
    site: the layer's ``Site``.
    w: its canonical folded weights: {'kernel'} or {'U', 's', 'V'}, plus 'bias' if any (``Folded.layers[path]``).
    execution: 'merged' or 'factored'; a layer holding a dense kernel is always 'merged'.

  Returns:
    'merged': {'kernel': the kernel of ``site.kernel_shape`` (rebuilt from U, s, V for an SVD layer)}.
    'factored': {'first': V·diag(s), 'second': Uᵀ}: (c, r) and (r, n) for a dense layer, (kh, kw, c, r) and
    (r, n) for a 'channel' conv, (kh, 1, c, r) and (1, kw, r, n) for a 'spatial' conv. Either way plus 'bias' if
    ``w`` has one.
  """
  out = {"bias": w["bias"]} if "bias" in w else {}
  if "kernel" in w or execution == "merged":
    kernel = w["kernel"] if "kernel" in w else np.asarray(
        factors.factors_to_kernel(w["U"], w["s"], w["V"], site.kernel_shape, site.decomposition))
    return {**out, "kernel": kernel}
  U, V = w["U"], w["V"] * w["s"]
  r = V.shape[1]
  if site.strides is None or site.decomposition == "channel":
    first = V if site.strides is None else V.reshape(*site.kernel_shape[:3], r)
    return {**out, "first": first, "second": U.T}
  kh, kw, c, n = site.kernel_shape
  return {**out, "first": V.reshape(kh, 1, c, r), "second": U.reshape(kw, n, r).transpose(0, 2, 1)[None]}


def run_layer(site: Site, w: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
  """The layer's output from its execution weights (``execution_weights``), bias included.

  Args:
    site: the layer's ``Site`` (strides and pads of a conv; None for a dense layer).
    w: the execution weights: {'kernel'} or {'first', 'second'}, plus 'bias' if any.
    x: the input: (..., c) for a dense layer, NHWC (batch, H, W, c) for a conv.

  Returns:
    (..., n) for a dense layer, (batch, H', W', n) for a conv.
  """
  if site.strides is None:
    y = x @ w["kernel"] if "kernel" in w else (x @ w["first"]) @ w["second"]
  elif "kernel" in w:
    y = factors.conv(x, w["kernel"], site.strides, site.pads)
  elif site.decomposition == "channel":  # the second factor as a 1×1 conv, not a dot: see INFERENCE_CPU_OPTIONS
    second = w["second"][None, None]
    y = factors.conv(factors.conv(x, w["first"], site.strides, site.pads), second, (1, 1), [(0, 0), (0, 0)])
  else:
    (sh, sw), (ph, pw) = site.strides, site.pads
    h = factors.conv(x, w["first"], (sh, 1), [ph, (0, 0)])
    y = factors.conv(h, w["second"], (1, sw), [(0, 0), pw])
  return y + w["bias"] if "bias" in w else y


@dataclasses.dataclass
class Folded:
  """A model with its BatchNorms folded: ``sites`` {path: Site}, ``layers`` {path: canonical folded weights},
  ``folded_norms`` {BatchNorm path: layer path}, ``kept_norms`` (BatchNorms left in place), ``rest`` (the variables
  the rewritten layers and folded norms no longer read), the model's ``apply_fn`` / ``apply_kwargs`` and one
  example's ``input_shape``."""
  sites: dict[str, Site]
  layers: dict[str, dict[str, np.ndarray]]
  folded_norms: dict[str, str]
  kept_norms: list[str]
  rest: dict
  apply_fn: Callable
  apply_kwargs: dict
  input_shape: tuple[int, ...]

  def ranks(self) -> dict[str, int]:
    """{SVD layer path: rank}."""
    return {p: w["s"].shape[0] for p, w in self.layers.items() if "s" in w}

  def plan(self, rule: str | Mapping[str, str] = "auto") -> dict[str, str]:
    """{layer path: 'merged' | 'factored'}: 'merged'/'factored' for every SVD layer, 'auto' by fewer
    ``CHANNEL_QUANTUM``-quantized MACs (ties: merged), or a mapping (checked; missing layers: merged).
    Dense layers are always 'merged'."""
    ranks = self.ranks()
    if not isinstance(rule, str):
      for path, execution in rule.items():
        check_choice(f"plan[{path!r}]", execution, EXECUTIONS)
      return {p: (rule.get(p, "merged") if p in ranks else "merged") for p in self.sites}
    check_choice("plan", rule, PLAN_RULES)
    if rule != "auto":
      return {p: (rule if p in ranks else "merged") for p in self.sites}
    plan = {}
    for path, site in self.sites.items():
      costs = site.macs(ranks.get(path), factors.CHANNEL_QUANTUM)
      plan[path] = "factored" if costs["factored"] < costs["merged"] else "merged"
    return plan

  def macs(self, plan: Mapping[str, str] | None = None) -> int:
    """Σ MACs per example of the rewritten layers under ``plan`` (default: the cheaper execution per layer)."""
    ranks = self.ranks()
    costs = [self.sites[p].macs(ranks.get(p)) for p in self.sites]
    if plan is None:
      return int(sum(min(c.values()) for c in costs))
    return int(sum(c[plan[p]] for p, c in zip(self.sites, costs, strict=True)))

  def weights(self, plan: Mapping[str, str]) -> dict:
    """{'layers': {path: execution weights (float32)}, 'rest': variables}: the arrays ``apply`` reads."""
    layers = {p: {k: jnp.asarray(v, jnp.float32) for k, v in execution_weights(self.sites[p], w, plan[p]).items()}
              for p, w in self.layers.items()}
    return {"layers": layers, "rest": self.rest}

  def apply(self, weights: Mapping, x: jax.Array) -> jax.Array:
    """The folded model's output (pure, jittable): the original ``apply`` with layers and folded norms rewritten."""
    layers = weights["layers"]

    def interceptor(next_fun, args, kwargs, context):
      path = "/".join(context.module.path)
      if context.method_name == "__call__" and path in layers:
        return run_layer(self.sites[path], layers[path], args[0] if args else next(iter(kwargs.values())))
      if context.method_name == "__call__" and path in self.folded_norms:
        return args[0] if args else next(iter(kwargs.values()))
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
      return self.apply_fn(weights["rest"], x, **self.apply_kwargs)


def _without(variables: Mapping, paths) -> dict:
  """``variables`` without the nodes at ``paths`` in any collection (and without emptied collections)."""
  out = {}
  for name, collection in variables.items():
    kept = {p: leaf for p, leaf in leaves_by_path(collection).items()
            if not any(p == q or p.startswith(q + "/") for q in paths)}
    if kept:
      out[name] = _nest(kept)
  return out


def _nest(flat: Mapping[str, Any]) -> dict:
  tree: dict = {}
  for path, leaf in flat.items():
    *parents, name = path.split("/")
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[name] = leaf
  return tree


def fold(model, variables: Mapping, x, **apply_kwargs) -> Folded:
  """``model`` with every BatchNorm that directly follows a linear layer folded into it (see the module doc).

  Args:
    model: a linen model (zoo or any) or an ``jaxsvd.linen.SVDModel``.
    variables: its variables ({'params', 'batch_stats', ...}).
    x: a sample input (its shape without the batch dimension is the one the folded model takes; values unused).
    **apply_kwargs: the eval-time arguments of ``apply`` (e.g. ``train=False``); BatchNorms must use running stats.

  Returns:
    The ``Folded`` model.

  Raises:
    ValueError: if a BatchNorm runs in train mode or a linear layer is called more than once.
  """
  sites, norms = _trace(model, variables, x, apply_kwargs)
  folded_norms = {n.path: n.producer for n in norms.values() if n.producer is not None}
  by_layer = {layer: norm for norm, layer in folded_norms.items()}
  params = variables["params"]
  layers = {}
  for path, site in sites.items():
    a, shift = _affine(variables, norms[by_layer[path]]) if path in by_layer else (None, None)
    layers[path] = _fold_layer(site, get_node(params, path), a, shift)
    sites[path] = dataclasses.replace(site, norm=by_layer.get(path))
  rest = _without(variables, [*sites, *folded_norms])
  apply_fn = model.model.apply if isinstance(model, SVDModel) else model.apply
  kept = sorted(set(norms) - set(folded_norms))
  return Folded(sites, layers, folded_norms, kept, rest, apply_fn, dict(apply_kwargs), tuple(x.shape[1:]))


__all__ = ["EXECUTIONS", "PLAN_RULES", "Folded", "Site", "execution_weights", "fold", "run_layer"]
