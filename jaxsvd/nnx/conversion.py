"""Which NNX layers ``jaxsvd.nnx.svdify`` converts, as what, and why the others stay dense.

  exact nnx.Linear / LinearGeneral / Conv / Embed   the ``jaxsvd.nnx.layers`` SVD layer (reconstruct | factored | auto)
  exact nnx.Einsum                                   ``view_layers.EinsumSVD`` when its kernel is a (stack of) matrix
                                                     (``matrix_view.einsum_view``) and its einsum_str is fixed
  a subclass of one of these                         kept, its kernel rebuilt from U, s, V where it reads it
                                                     (``view_layers.factor_kernel``; reconstruct execution) when the
                                                     rule of ``subclass_reasons`` holds

The subclass rule: ``reconstruct`` hands the layer its kernel rebuilt from U, s, V, so a subclass computes its own
function exactly when the kernel Param is the only way its methods reach the kernel. Checked at conversion: (1) its
variables are the parent's (kernel/embedding and bias; own params could stand in for the kernel), (2) no other
attribute holds the kernel Param (it would keep reading the dense copy), (3) one abstract call on a probe input
reads the rebuilt kernel (a ``__call__`` that never reads it bypasses the param), (4) the parent's own rules
(dilation, masks, custom dot functions, ...) hold. Factored execution would bypass how its methods use the kernel, so
a converted subclass always runs ``reconstruct``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes

from jaxsvd.core.matrix_view import MatrixView, conv_view, describe, einsum_view, simple_view
from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.nnx import view_layers

CONVERTIBLE = (nnx.Linear, nnx.LinearGeneral, nnx.Conv, nnx.Embed)
LINEAR_LIKE = (*CONVERTIBLE, nnx.ConvTranspose, nnx.Einsum)  # each is in the report: converted or why not
SVD_LAYERS = (*nnx_layers.SVD_LAYERS, view_layers.EinsumSVD, view_layers.FactorKernel)


def base_class(module) -> type | None:
  """The flax class among ``CONVERTIBLE`` and ``nnx.Einsum`` that ``module`` is an instance of (or None).

  Args:
    module: any nnx module.

  Returns:
    The most derived such class in ``type(module).__mro__``, or None.
  """
  return next((c for c in type(module).__mro__ if c in (*CONVERTIBLE, nnx.Einsum)), None)


def kernel_name(module) -> str:
  """'embedding' for an ``nnx.Embed`` (or subclass), else 'kernel'.

  Args:
    module: a layer with a ``base_class``.

  Returns:
    The name of its kernel Param attribute.
  """
  return "embedding" if isinstance(module, nnx.Embed) else "kernel"


def layer_view(module, decomposition: str = "channel") -> MatrixView | None:
  """The ``MatrixView`` of a convertible layer's kernel, as the NNX SVD layers factor it (LinearGeneral: of its
  kernel reshaped to (∏in, ∏out)); None for a 1-D conv.

  Args:
    module: an ``nnx.Linear``, ``nnx.LinearGeneral``, ``nnx.Conv`` or ``nnx.Embed``.
    decomposition: the conv view, 'channel' or 'spatial'.

  Returns:
    The view, or None.
  """
  if isinstance(module, nnx.Embed):
    return simple_view(module.embedding.shape, 0, 1)
  shape = tuple(module.kernel.shape)
  if isinstance(module, nnx.LinearGeneral):
    n_in = len(np.ravel(module.axis))
    return simple_view((math.prod(shape[:n_in]), math.prod(shape[n_in:])), 0, 1)
  if isinstance(module, nnx.Conv):
    return conv_view(shape, 1, decomposition) if len(shape) == 4 else None
  return simple_view(shape, 0, 1)


def kernel_view(module, decomposition: str = "channel") -> MatrixView | str:
  """The view the factors of ``module``'s kernel are in, in the kernel's own shape, or the reason it has none.

  Args:
    module: a layer with a ``base_class``.
    decomposition: the conv view.

  Returns:
    The ``MatrixView`` (an Einsum's from ``einsum_view``; a 1-D conv's channel view), or a one-line reason (str).
  """
  base = base_class(module)
  shape = tuple(getattr(module, kernel_name(module)).shape)
  if base is nnx.Einsum:
    if module.einsum_str is None:
      return "einsum_str is given at call time (the matrix view must be fixed at conversion)"
    return einsum_view(shape, module.einsum_str)
  if base is nnx.Conv:
    return conv_view(shape, 1, decomposition)
  if base is nnx.LinearGeneral:
    return simple_view(shape, 0, len(module.in_features))
  return simple_view(shape, 0, 1)


def unsupported(module) -> list[str]:
  """Why ``module`` cannot be held exactly as U, s, V by its SVD layer (empty when it can).

  Args:
    module: a linear-like nnx module (``LINEAR_LIKE``), subclasses included (the parent's rules apply to them;
      ``subclass_reasons`` adds the subclass rule).

  Returns:
    The reasons, e.g. ['feature_group_count=4'].
  """
  kind = base_class(module)
  if kind is None:
    return [f"nnx.{type(module).__name__} has no SVD form here (Linear, LinearGeneral, Conv, Embed, Einsum convert)"]
  reasons = []
  param = getattr(module, kernel_name(module))
  expected = {nnx.Linear: lambda m: (m.in_features, m.out_features),
              nnx.LinearGeneral: lambda m: (*m.batch_axis.values(), *m.in_features, *m.out_features),
              nnx.Conv: lambda m: m.kernel_shape, nnx.Embed: lambda m: (m.num_embeddings, m.features),
              nnx.Einsum: lambda m: m.kernel_shape}[kind](module)
  if tuple(param.shape) != tuple(expected):
    reasons.append(f"kernel shape {tuple(param.shape)} is not {tuple(expected)} (stacked by nnx.vmap/nnx.scan?)")
  if getattr(module, "promote_dtype", dtypes.promote_dtype) is not dtypes.promote_dtype:
    reasons.append("a custom promote_dtype")
  if getattr(module, "precision", None) is not None:
    reasons.append(f"precision={module.precision}")
  if getattr(module, "preferred_element_type", None) is not None:
    reasons.append(f"preferred_element_type={module.preferred_element_type}")
  if kind is nnx.Linear and module.dot_general is not jax.lax.dot_general:
    reasons.append("a custom dot_general")
  if kind is nnx.LinearGeneral:
    reasons += [why for bad, why in ((module.batch_axis, f"batch_axis={dict(module.batch_axis)} (one kernel per "
                                      "batch index)"), (module.dot_general or module.dot_general_cls,
                                                        "a custom dot_general")) if bad]
  if kind is nnx.Conv:
    reasons += _conv_reasons(module)
  if kind is nnx.Einsum:
    if module.einsum_op is not jax.numpy.einsum:
      reasons.append("a custom einsum_op")
    if isinstance(view := kernel_view(module), str):
      reasons.append(view)
  return reasons


def _conv_reasons(conv: nnx.Conv) -> list[str]:
  ones = lambda v: v is None or all(d == 1 for d in ((v,) if isinstance(v, int) else v))
  checks = {f"{len(conv.kernel_size)}-D kernel (1-D and 2-D convs convert)": len(conv.kernel_size) > 2,
            f"input_dilation={conv.input_dilation}": not ones(conv.input_dilation),
            f"kernel_dilation={conv.kernel_dilation}": not ones(conv.kernel_dilation),
            f"feature_group_count={conv.feature_group_count}": conv.feature_group_count != 1,
            "a mask": conv.mask is not None,
            "a custom conv_general_dilated": conv.conv_general_dilated is not jax.lax.conv_general_dilated}
  return [why for why, bad in checks.items() if bad]


def subclass_reasons(module) -> list[str]:
  """Why a subclass of a convertible layer would not compute its own function on a kernel rebuilt from U, s, V
  (rules (1)-(2) of the module doc; (3) is checked on the converted layer by ``svdify``). Empty when it may convert.

  Args:
    module: an instance of a strict subclass of ``base_class(module)``.

  Returns:
    The reasons.
  """
  name, cls = kernel_name(module), type(module).__name__
  kernel = getattr(module, name)
  own = sorted(k for k, v in vars(module).items() if isinstance(v, nnx.Variable) and k not in (name, "bias"))
  if own:
    return [f"subclass {cls} defines its own variables {own}: they may stand in for the kernel, so "
            f"U·diag(s)·Vᵀ would not be the map it applies"]
  aliases = sorted(k for k, v in vars(module).items() if v is kernel and k != name)
  if aliases:
    return [f"subclass {cls} holds its kernel Param also as {aliases}: it would keep reading the dense kernel"]
  return []


def probe(module) -> jax.ShapeDtypeStruct:
  """An abstract input ``module``'s call accepts (``view_layers.probe_input``).

  Args:
    module: a layer with a ``base_class``.

  Returns:
    The ``jax.ShapeDtypeStruct``.
  """
  base = base_class(module)
  shape = tuple(getattr(module, kernel_name(module)).shape)
  lhs = spec = None
  if base is nnx.Einsum:
    lhs, rest = module.einsum_str.replace(" ", "").split(",")
    spec = rest.split("->")[0]
  features = getattr(module, "in_features", None)
  return view_layers.probe_input(shape, lhs, spec, base.__name__, features)


def describe_layer(kind: str, new, view: MatrixView, execution: str) -> str:
  """The report line of a converted layer, e.g. 'Linear -> LinearSVD: 8 × 16, rank 4 of 8, auto'.

  Args:
    kind: the dense layer's class name.
    new: the converted layer (its ``rank``).
    view: the matrix view of its factors.
    execution: its execution ('reconstruct' | 'factored' | 'auto', or why it is forced).

  Returns:
    The line.
  """
  return (f"{kind} -> {type(new).__name__}: {describe(view)}, rank {new.rank} of "
          f"{view.full_rank}, {execution}")


def subclass_to_svd(module, rank: int | None, decomposition: str, mode: str, sigma: str, path: str):
  """``module`` (a subclass of a convertible layer) converted in place by ``view_layers.factor_kernel``, or the
  reasons it stays dense (``conversion``'s subclass rule; the probe call is run on the converted layer and the
  conversion undone when the call never reads the rebuilt kernel).

  Args:
    module: the layer.
    rank, decomposition, mode, sigma, path: as ``to_svd``.

  Returns:
    (the converted module, []) or (None, reasons).
  """
  if reasons := subclass_reasons(module):
    return None, reasons
  name, cls = kernel_name(module), type(module)
  kernel, sample = getattr(module, name), probe(module)
  try:
    view_layers.factor_kernel(module, name, kernel_view(module, decomposition), rank, mode, sigma,
                              decomposition)
  except ValueError as err:
    raise ValueError(f"svdify: layer {path!r}: {err}") from None
  try:
    reads, why = view_layers.kernel_reads(module, sample), None
  except Exception as err:  # noqa: BLE001 - any failure of the user's call on the probe: leave it dense
    reads, why = 0, f"its call on a probe input {sample.shape} failed ({type(err).__name__}: {err})"
  if reads:
    return module, []
  for attr in ("U", "s", "V", "view", "mode", "sigma", "decomposition"):
    delattr(module, attr)
  module.__class__ = cls
  setattr(module, name, kernel)
  return None, [why or f"subclass {cls.__name__}'s call never reads its {name} Param (it bypasses the param), so "
                       "U·diag(s)·Vᵀ would not be the map it applies"]


__all__ = ["CONVERTIBLE", "LINEAR_LIKE", "SVD_LAYERS", "base_class", "kernel_name", "layer_view", "kernel_view",
           "unsupported", "subclass_reasons", "probe", "describe_layer", "subclass_to_svd"]
