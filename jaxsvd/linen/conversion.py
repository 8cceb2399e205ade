"""How linen layers run in SVD form: the machinery behind ``jaxsvd.linen.SVDModel`` that every layer kind shares
(what is specific to one layer class — its matrix view, whether it runs natively, its statistics and MACs — is its
kind, ``jaxsvd.linen.kinds``).

Two ways a layer runs in SVD form, both holding U, s, V (``matrix_view.MatrixView``) in the layer's own scope:
  native   plain ``nn.Dense`` and 2-D ``nn.Conv`` (one group, no dilation or mask, NHWC input; their kinds'
           ``native``) run as ``jaxsvd.linen.DenseSVD`` / ``jaxsvd.linen.ConvSVD`` do (``native_factors``):
           ``mode`` reconstruct | factored | auto.
  kernel   every other layer with a kind keeps its own ``__call__``: when it asks for its kernel param
           (``self.param('kernel' | 'embedding', init, shape, dtype)``) it gets U·diag(s)·Vᵀ rebuilt to that shape
           (reconstruct execution). So DenseGeneral, Embed (lookup and ``attend``), Einsum, 1-D/3-D/grouped/dilated
           convs, ConvTranspose, ConvLocal and subclasses run through their own, unmodified math.
A subclass that defines methods of its own (e.g. a weight-standardized conv overriding ``param`` or ``__call__``) runs
the kernel way too, so its methods see the rebuilt kernel where they read the param and it computes its own function
(reconstruct execution, whatever ``mode`` says): it converts when, during the call, it requests its kernel through
``param`` and creates no params besides the parent's (kernel and bias; own params could stand in for the kernel).
A layer is left dense, with a reason in the conversion report, when the kernel it applies may not be the kernel
param: such a subclass that never requests its kernel or creates params of its own, a conv with a ``mask``, an
Einsum whose kernel is not a (stack of) matrix.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from jaxsvd.core import matrix_view, svd
from jaxsvd.core.structure import unboxed
from jaxsvd.linen import layers

_LIFTED = "flax.linen.transforms"  # classes nn.vmap / nn.scan / nn.remat make of a layer: the layer's own math
_GENERATED = {"__init__", "__repr__", "__eq__", "__hash__", "__post_init__", "__setattr__", "__getattr__"}


@dataclasses.dataclass(frozen=True)
class Converted:
  """A converted layer in the report: its class, matrix view ('L × (m × k)'), rank and execution."""
  kind: str
  matrix: str
  rank: int
  execution: str


def own_methods(module: nn.Module, base: type) -> list[str]:
  """The methods ``type(module)`` and the classes between it and its flax base class define (lifted
  ``nn.vmap``/``nn.scan``/``nn.remat`` classes and generated dataclass methods aside).

  Args:
    module: a layer.
    base: the flax class of its kind (``kinds.resolve(module).layer``), in its MRO.

  Returns:
    The sorted method names (empty for the flax class itself or a subclass that only changes defaults).
  """
  cls = type(module)
  return sorted({name for klass in cls.__mro__[:cls.__mro__.index(base)] if klass.__module__ != _LIFTED
                 for name, v in vars(klass).items()
                 if callable(v) and not isinstance(v, type) and name not in _GENERATED})


def subclass_param_reason(module: nn.Module, name: str, kernel_name: str, own: list[str]) -> str | None:
  """Why a subclass with methods of its own that requests param ``name`` cannot be converted, or None.

  Args:
    module: the layer.
    name: the param it requests.
    kernel_name: its kernel param's name.
    own: its own methods (``own_methods``, not empty).

  Returns:
    A one-line reason for a param other than the kernel and 'bias', else None.
  """
  if name in (kernel_name, "bias"):
    return None
  return (f"subclass {type(module).__name__} (defines {', '.join(own)}) creates its own param "
          f"{name!r}: it may stand in for the kernel, so U·diag(s)·Vᵀ would not be the map it applies")


def _box_like(drawn, value, names):
  """``value`` boxed like ``drawn`` (a flax partitioning box) with axis ``names``, or ``value`` if not boxed."""
  if isinstance(drawn, (nn.Partitioned, nn.LogicallyPartitioned)):
    return drawn.replace(value=value, names=names)
  return value


def _rank_name(drawn) -> str | None:
  return "rank" if isinstance(drawn, nn.LogicallyPartitioned) else None


def svd_factors(param, module: nn.Module, view, rank: int | None, init_fn, init_args, init_kwargs,
                init_scheme: str = "svd_of_he"):
  """Creates (or reads) U, s, V of ``view`` at ``rank`` in ``module``'s scope, through ``param``.

  At init the layer's own kernel initializer is drawn once (boxed or not) and factored per matrix, s rescaled to
  keep each matrix's Frobenius norm (``MatrixView.factors(keep_norm=True)``): at full rank the rebuilt kernel is
  the dense layer's init. A partitioning box's axis names carry over (``MatrixView.factor_names``).

  Args:
    param: the scope's (or module's) ``param`` method.
    module: the layer.
    view: its ``MatrixView``.
    rank: r, or None for full rank.
    init_fn, init_args, init_kwargs: what the layer passes for its kernel (shape first, then dtype).
    init_scheme: 'svd_of_he' (as above) or 'official' (``official_factors``; the kernel init only names axes).

  Returns:
    (U, s, V), unboxed, in the kernel's param dtype.

  Raises:
    ValueError: if ``rank`` exceeds min(m, k).
  """
  full = view.full_rank
  rank = full if rank is None else rank
  if rank > full:
    raise ValueError(f"svdify: rank {rank} of layer {'/'.join(module.path)!r} exceeds min(m, k)={full} of its "
                     f"{matrix_view.describe(view)} matrices")
  dtype = init_args[1] if len(init_args) > 1 else init_kwargs.get("dtype", jnp.float32)
  stack, (m, k) = view.stack_shape, view.matrix_shape
  shapes = ((*stack, m, rank), (*stack, rank), (*stack, k, rank))
  if module.scope.has_variable("params", "U"):
    drawn, values = None, tuple(jnp.zeros(s, dtype) for s in shapes)  # only shape-checked by flax
  elif init_scheme == "official":
    key = module.make_rng("params")
    drawn = jax.eval_shape(lambda k: init_fn(k, init_args[0], jnp.float32, *init_args[2:], **init_kwargs), key)
    values = tuple(v.astype(dtype) for v in official_factors(key, view, rank))
  else:
    drawn = init_fn(module.make_rng("params"), init_args[0], jnp.float32, *init_args[2:], **init_kwargs)
    values = tuple(v.astype(dtype) for v in view.factors(unboxed(drawn), rank, True))
  names = view.factor_names(tuple(drawn.names), _rank_name(drawn)) if hasattr(drawn, "names") else (None,) * 3
  return tuple(param(name, lambda *_, v=v, n=n: _box_like(drawn, v, n))
               for name, v, n in zip(("U", "s", "V"), values, names))


def official_factors(key, view, rank: int):
  """``svd.official_init`` on each matrix of ``view``: U ~ N(0, 2/r), V ~ N(0, 2/k), s ~ N(0, 1) (a 2-D conv's
  spatial view: U ~ N(0, 2/m), V ~ N(0, 2/r)).

  Args:
    key: the PRNG key (split into one key each for U, s, V).
    view: the kernel's ``MatrixView``; a view with two out axes counts as the spatial view.
    rank: r.

  Returns:
    (U (*L, m, r), s (*L, r), V (*L, k, r)), float32.
  """
  (m, k), stack = view.matrix_shape, view.stack_shape
  spatial = len(view.out) == 2  # conv_view's spatial grouping (kw, n) × (kh, c)
  u_var, v_var = (2.0 / m, 2.0 / rank) if spatial else (2.0 / rank, 2.0 / k)
  ku, ks, kv = jax.random.split(key, 3)
  normal = lambda key, shape: jax.random.normal(key, shape, jnp.float32)  # noqa: E731
  return (normal(ku, (*stack, m, rank)) * jnp.sqrt(u_var), normal(ks, (*stack, rank)),
          normal(kv, (*stack, k, rank)) * jnp.sqrt(v_var))


class patched_param:
  """Context manager: while active, ``module``'s scope answers ``param(kernel_name, ...)`` with the kernel rebuilt
  from ``svd_factors`` (other params as usual)."""

  def __init__(self, module: nn.Module, kernel_name: str, make_view, rank, settings, other_param=None):
    self.module, self.kernel_name, self.make_view, self.rank = module, kernel_name, make_view, rank
    self.settings = settings  # the SVDModel: sigma, init_scheme
    self.other_param = other_param  # called with the name of any other param requested (it may raise)

  def __enter__(self):
    scope = self.module.scope
    original = scope.param

    def param(name, init_fn, *init_args, unbox=True, **init_kwargs):
      if name != self.kernel_name:
        if self.other_param is not None:
          self.other_param(name)
        return original(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
      view = self.make_view(init_args[0])
      U, s, V = svd_factors(original, self.module, view, self.rank, init_fn, init_args, init_kwargs,
                            self.settings.init_scheme)
      return view.to_kernel(U, svd.effective_s(s, self.settings.sigma), V)

    self.scope = scope
    scope.param = param
    return self

  def __exit__(self, *exc):
    del self.scope.param


def native_factors(module, view, rank, settings):
  """(U, s_eff, V) of a native layer (plain Dense / 2-D Conv) from ``svd_factors`` through ``module.param``, s
  already passed through ``settings.sigma`` (``svd.effective_s``).

  Args:
    module: the layer being called (its ``kernel_init``, ``param_dtype``).
    view: its ``MatrixView``.
    rank: r, or None for full rank.
    settings: the ``SVDModel`` (its ``sigma`` and ``init_scheme`` are read).

  Returns:
    (U, s, V).
  """
  init_args = (view.kernel_shape, module.param_dtype)
  U, s, V = svd_factors(module.param, module, view, rank, module.kernel_init, init_args, {}, settings.init_scheme)
  return U, svd.effective_s(s, settings.sigma), V


def pair(value) -> tuple[int, int]:
  """A 2-D conv's strides (None, an int or a pair) as a pair.

  Args:
    value: None (meaning 1), an int, or a sequence of ints.

  Returns:
    (value, value) for an int (1 for None), else the sequence's entries as a tuple of ints.
  """
  value = 1 if value is None else value
  return (value, value) if isinstance(value, int) else tuple(int(d) for d in np.ravel(value))


def native_output(module, y):
  """y + bias, in ``module.dtype`` when set (the layer's own output dtype; y was summed in float32).

  Args:
    module: the native layer (its ``use_bias``, ``features``, ``bias_init``, ``param_dtype``, ``dtype``).
    y: its output before the bias.

  Returns:
    The output.
  """
  y = layers.add_bias(module, y, module.use_bias, module.features, module.bias_init, module.param_dtype)
  return y if module.dtype is None else y.astype(module.dtype)


def unbox_tree(tree):
  """``tree`` with every flax metadata box replaced by its value.

  Args:
    tree: any pytree, possibly holding ``nn.Partitioned`` / ``nn.LogicallyPartitioned`` boxes.

  Returns:
    The same tree with each box's ``value`` in its place, read as it is (``flax.core.meta.unbox`` would add a
    sharding constraint per logical box, which fails eagerly on shapes and on values outside the box's mesh).
  """
  return jax.tree.map(lambda x: x.value if isinstance(x, meta.AxisMetadata) else x, tree,
                      is_leaf=lambda x: isinstance(x, meta.AxisMetadata))


def layer_path(module: nn.Module, root: nn.Module, depth: int) -> str:
  """``module``'s path below ``root`` as its params are keyed: the names along its parent chain up to ``root``.

  ``module.path`` can disagree: a layer bound as a field of ``root`` (``nn.Sequential``'s layers) keeps the prefix
  of ``root``'s own name after ``nn.share_scope`` moved ``root``'s variables up (params ``layers_0``, path
  ``model/layers_0``).

  Args:
    module: a bound layer inside ``root``.
    root: the bound model ``svdify`` wraps.
    depth: ``len(svd_model.path)``, used when ``root`` is not among ``module``'s parents.

  Returns:
    The '/'-joined path.
  """
  names, node = [], module
  while isinstance(node, nn.Module) and node is not root:
    names.append(node.name)
    node = node.parent
  return "/".join(reversed(names)) if node is root else "/".join(module.path[depth:])


__all__ = ["Converted", "own_methods", "subclass_param_reason", "layer_path", "svd_factors", "official_factors",
           "patched_param", "native_factors", "native_output", "pair", "unbox_tree"]
