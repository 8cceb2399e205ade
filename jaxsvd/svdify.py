"""Turn any linen model into its SVD form, without touching its code.

``svdify(model, ranks)`` runs ``model`` with every ``nn.Dense`` and 2-D ``nn.Conv`` intercepted
(``nn.intercept_methods``): instead of a ``kernel`` the layer holds ``U``, ``s``, ``V`` (created in the
layer's own scope, so param paths are the original model's) and runs as ``layers.DenseSVD`` /
``layers.ConvSVD`` would. Everything else (BatchNorm, attention, pooling, ...) is untouched.

  svd_model = svdify(model, ranks={"Conv_1": 8}, skip=("Conv_0",))   # missing paths: full rank
  variables = svd_model.init(key, x)                                 # He-equivalent SVD init
  ranks(variables["params"])                                         # the architecture, read back
  svd_model = svdify(model, new_ranks)                               # after pruning: same params tree

``decompose(svd_model, dense_variables, x)`` starts from a trained dense model instead: every kernel
is factored by its SVD and truncated to the model's ranks (best rank-r approximation, Eckart–Young).
``export.merge(params, dense_params)`` goes back. Only what the SVD layers can express is converted:
convs with dilation, groups, a mask, or padding other than SAME/VALID/explicit raise an error that
names the layer; list such layers in ``skip``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd import factors, layers
from jaxsvd.structure import iter_svd_layers, validate_ranks
from jaxsvd.tree import get_node, replace_nodes
from jaxsvd.validate import check_choice


@dataclasses.dataclass(frozen=True)
class SVDModel:
  """``model`` with its Dense/Conv layers in SVD form; ``init``/``apply`` as a linen module's."""

  model: nn.Module
  ranks: tuple[tuple[str, int], ...] = ()  # frozen {layer path: rank}; missing paths are full rank
  decomposition: str = "channel"
  mode: str = "auto"
  skip: tuple[str, ...] = ()  # layer paths kept dense
  sigma: str = "signed"  # 'signed' | 'abs' (the official forward, see jaxsvd.layers)
  init_scheme: str = "svd_of_he"  # 'svd_of_he' | 'official' (not `init`: that is the method)

  def __post_init__(self):
    check_choice("svdify.decomposition", self.decomposition, layers.DECOMPOSITIONS)
    check_choice("svdify.mode", self.mode, layers.MODES)
    check_choice("svdify.sigma", self.sigma, layers.SIGMAS)
    check_choice("svdify.init", self.init_scheme, layers.INITS)
    validate_ranks(dict(self.ranks))
    if overlap := sorted(set(dict(self.ranks)) & set(self.skip)):
      raise ValueError(f"svdify: layers {overlap} are both in ranks and in skip")

  def init(self, rngs, *args, **kwargs):
    """``model.init`` with the Dense/Conv layers in SVD form.

    Args:
      rngs: the PRNG key(s), as for ``nn.Module.init``.
      *args: the model's inputs.
      **kwargs: further arguments of ``model.init``.

    Returns:
      The variables; each converted layer holds ``U``, ``s``, ``V`` instead of ``kernel``.

    Raises:
      ValueError: if ``ranks`` names a layer that is not a converted Dense/Conv of the model, or a conv uses a
        feature the SVD layers cannot express.
    """
    return self._run(self.model.init, rngs, *args, **kwargs)

  def apply(self, variables, *args, **kwargs):
    """``model.apply`` with the Dense/Conv layers in SVD form.

    Args:
      variables: SVD-form variables (from ``init`` or ``decompose``).
      *args: the model's inputs.
      **kwargs: further arguments of ``model.apply`` (e.g. ``mutable``).

    Returns:
      What ``model.apply`` returns.

    Raises:
      ValueError: as for ``init``.
    """
    return self._run(self.model.apply, variables, *args, **kwargs)

  def _run(self, fn, *args, **kwargs):
    seen: set[str] = set()
    with nn.intercept_methods(functools.partial(self._intercept, seen)):
      out = fn(*args, **kwargs)
    if unknown := sorted(set(dict(self.ranks)) - seen):
      raise ValueError(f"svdify: ranks name layers {unknown} that are not Dense/Conv layers of the model "
                       f"(converted: {sorted(seen)})")
    return out

  def with_ranks(self, ranks: Mapping[str, int]) -> SVDModel:
    """This model at new ranks, its other settings unchanged.

    Args:
      ranks: {layer path: rank}; missing paths are full rank.

    Returns:
      A new ``SVDModel``.

    Raises:
      ValueError: if a rank is not an int ≥ 1, or a layer is also in ``skip``.
    """
    return dataclasses.replace(self, ranks=_frozen(ranks))

  def with_mode(self, mode: str) -> SVDModel:
    """This model with its SVD layers run in execution mode ``mode``.

    Args:
      mode: one of ``layers.MODES``.

    Returns:
      A new ``SVDModel``.

    Raises:
      ValueError: if ``mode`` is not one of ``layers.MODES``.
    """
    return dataclasses.replace(self, mode=mode)

  def svd_layer(self, module: nn.Module) -> nn.Module:
    """The unbound ``ConvSVD``/``DenseSVD`` that ``module`` (a bound layer of ``model``) runs as, else ``module``.

    Args:
      module: a bound submodule of ``model``.

    Returns:
      A ``DenseSVD``/``ConvSVD`` with the layer's features, bias setting and rank and this model's mode (a conv
      also its kernel size, strides, padding and this model's decomposition); ``module`` itself when it is not an
      ``nn.Dense``/``nn.Conv`` or is in ``skip``.

    Raises:
      ValueError: if a conv's kernel size or strides are not 2-D.
    """
    path = "/".join(module.path)
    if type(module) not in (nn.Dense, nn.Conv) or path in self.skip:
      return module
    rank = dict(self.ranks).get(path)
    if isinstance(module, nn.Dense):
      return layers.DenseSVD(module.features, rank=rank, use_bias=module.use_bias, mode=self.mode, sigma=self.sigma,
                             init_scheme=self.init_scheme, parent=None)
    return layers.ConvSVD(module.features, _pair(module.kernel_size, path, "kernel_size"),
                          _pair(module.strides or 1, path, "strides"), module.padding, rank=rank,
                          decomposition=self.decomposition, mode=self.mode, use_bias=module.use_bias,
                          sigma=self.sigma, init_scheme=self.init_scheme, parent=None)

  def _intercept(self, seen: set[str], next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__" or type(module) not in (nn.Dense, nn.Conv):
      return next_fun(*args, **kwargs)
    path = "/".join(module.path)
    if path in self.skip:
      return next_fun(*args, **kwargs)
    seen.add(path)
    rank = dict(self.ranks).get(path)
    x = args[0] if args else kwargs["inputs"]
    if isinstance(module, nn.Dense):
      return _dense(module, x, rank, self.mode, self.sigma, self.init_scheme)
    return _conv(module, path, x, rank, self.decomposition, self.mode, self.sigma, self.init_scheme)


def svdify(model: nn.Module, ranks: Mapping[str, int] | None = None, decomposition: str = "channel",
           mode: str = "auto", skip: tuple[str, ...] | list[str] = (), sigma: str = "signed",
           init: str = "svd_of_he") -> SVDModel:
  """``model`` with every ``nn.Dense``/``nn.Conv`` (except ``skip``) as U, s, V at ``ranks`` (default full).

  Args:
    model: any linen model.
    ranks: {layer path: rank}; missing paths (and None) mean full rank.
    decomposition: how conv kernels are matricized, one of ``layers.DECOMPOSITIONS``.
    mode: the SVD layers' execution mode, one of ``layers.MODES``.
    skip: layer paths kept dense.
    sigma: 'signed' (W = U·diag(s)·Vᵀ) or 'abs' (W = U·diag(|s|)·Vᵀ, the official forward; ``jaxsvd.layers``).
    init: 'svd_of_he' or 'official' (``layers.official_init``).

  Returns:
    The ``SVDModel``.

  Raises:
    ValueError: if ``decomposition``, ``mode`` or a rank is invalid, or a layer is both in ``ranks`` and in ``skip``.
    TypeError: if ``model`` is an ``nnx.Module`` (``jaxsvd.svdify_nnx`` converts those).
  """
  if isinstance(model, nnx.Module):
    raise TypeError(f"svdify: {type(model).__name__} is an nnx.Module; use jaxsvd.svdify_nnx.svdify "
                    "(NNX graph surgery)")
  return SVDModel(model, _frozen(ranks or {}), decomposition, mode, tuple(skip), sigma, init)


def decompose(svd_model: SVDModel, dense_variables: Mapping[str, Any], *args, **kwargs) -> dict:
  """``dense_variables`` of ``svd_model.model`` with each converted kernel replaced by its truncated SVD.

  Args:
    svd_model: the SVD model the result is for (its layers and ranks).
    dense_variables: variables of the dense ``svd_model.model``. Non-param collections (e.g. batch_stats) are
      kept as they are.
    *args: sample inputs (only their shapes are used).
    **kwargs: sample keyword inputs (only their shapes are used).

  Returns:
    The variables with ``U``, ``s``, ``V`` (truncated to the SVD layer's rank) in place of each converted
    layer's ``kernel``; the layer's other params (e.g. ``bias``) are kept.

  Raises:
    ValueError: if the dense params have no kernel at a converted layer.
  """
  target = jax.eval_shape(svd_model.init, jax.random.key(0), *args, **kwargs)["params"]
  params = dense_variables["params"]
  new_nodes = {}
  for path, node in iter_svd_layers(target):
    try:
      dense = get_node(params, path)
      kernel = jnp.asarray(dense["kernel"])
    except (KeyError, TypeError) as err:
      raise ValueError(f"decompose: the dense params have no kernel at layer {path!r}") from err
    u, s, vt = jnp.linalg.svd(factors.kernel_to_matrix(kernel, svd_model.decomposition), full_matrices=False)
    r = node["s"].shape[0]
    new_nodes[path] = {**{k: v for k, v in dense.items() if k != "kernel"}, "U": u[:, :r], "s": s[:r], "V": vt[:r].T}
  return {**dense_variables, "params": replace_nodes(params, new_nodes)}


def _frozen(ranks: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
  validate_ranks(dict(ranks))
  return tuple(sorted((str(k), v) for k, v in ranks.items()))


def _bias(module, y):
  return layers.add_bias(module, y, module.use_bias, module.features, module.bias_init, module.param_dtype)


def _dense(module: nn.Dense, x, rank, mode, sigma, init):
  U, s, V = layers.svd_params(module, (x.shape[-1], module.features), rank, "channel", module.kernel_init, init)
  s = layers.effective_s(s, sigma)
  x, U, s, V = layers.cast(module.dtype, x, U, s, V)
  return _bias(module, layers.dense_svd_apply(x, U, s, V, module.features, mode))


def _conv(module: nn.Conv, path: str, x, rank, decomposition, mode, sigma, init):
  kernel_size = _pair(module.kernel_size, path, "kernel_size")
  strides = _pair(module.strides or 1, path, "strides")
  unsupported = {"kernel_dilation": _pair(module.kernel_dilation or 1, path, "kernel_dilation") != (1, 1),
                 "input_dilation": _pair(module.input_dilation or 1, path, "input_dilation") != (1, 1),
                 "feature_group_count": module.feature_group_count != 1, "mask": module.mask is not None,
                 "padding": isinstance(module.padding, str) and module.padding not in ("SAME", "VALID"),
                 "input rank": x.ndim != 4}
  if bad := [k for k, v in unsupported.items() if v]:
    raise ValueError(f"svdify: conv {path!r} has {', '.join(bad)} that the SVD layers do not support; "
                     f"add it to skip=")
  kernel_shape = (*kernel_size, x.shape[-1], module.features)
  U, s, V = layers.svd_params(module, kernel_shape, rank, decomposition, module.kernel_init, init)
  s = layers.effective_s(s, sigma)
  x, U, s, V = layers.cast(module.dtype, x, U, s, V)
  pads = factors.conv_pads(x.shape[1:3], kernel_size, strides, module.padding)
  return _bias(module, layers.conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, decomposition, mode))


def _pair(value, path: str, name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, int) else tuple(np.ravel(value).tolist())
  if len(pair) != 2:
    raise ValueError(f"svdify: conv {path!r} {name}={value!r} is not 2-D; only 2-D convs can be converted")
  return pair
