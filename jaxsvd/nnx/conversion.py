"""Which NNX layers ``jaxsvd.nnx.svdify`` converts, as what, and why the others stay dense.

Each layer class with a kind (``jaxsvd.nnx.kinds``: Linear, LinearGeneral, Conv, Embed, Einsum, ConvTranspose, and
any kind a user registers) is converted or reported:

  exactly the kind's class       its ``to_svd`` layer (``LinearSVD``, ..., ``ConvTransposeSVD``; reconstruct |
                                 factored | auto), unless ``unsupported`` names a reason
  a subclass of one of these     kept, its kernel rebuilt from U, s, V where it reads it
                                 (``view_layers.factor_kernel``; reconstruct execution) when the rule of
                                 ``subclass_reasons`` holds

The subclass rule: ``reconstruct`` hands the layer its kernel rebuilt from U, s, V, so a subclass computes its own
function exactly when the kernel Param is the only way its methods reach the kernel. Checked at conversion: (1) its
variables are the parent's (kernel/embedding and bias; own params could stand in for the kernel), (2) no other
attribute holds the kernel Param (it would keep reading the dense copy), (3) one abstract call on a probe input
(its kind's ``probe``) reads the rebuilt kernel (a ``__call__`` that never reads it bypasses the param), (4) the
parent's own rules (dilation, masks, custom dot functions, ...: its kind's ``reasons``) hold. Factored execution
would bypass how its methods use the kernel, so a converted subclass always runs ``reconstruct``.
"""

from __future__ import annotations

import jax
from flax import nnx
from flax.nnx.nn import dtypes

from jaxsvd.core.matrix_view import MatrixView, describe
from jaxsvd.nnx import kinds, view_layers


def svd_layer_classes() -> tuple[type, ...]:
  """The classes of converted layers: the kinds' SVD layers and ``view_layers.FactorKernel`` (subclasses)."""
  return (*kinds.svd_layer_classes(), view_layers.FactorKernel)


def base_class(module) -> type | None:
  """The layer class of ``module``'s kind (``kinds.resolve``), or None.

  Args:
    module: any nnx module.

  Returns:
    The most derived class in ``type(module).__mro__`` with a registered kind, or None.
  """
  kind = kinds.resolve(module)
  return None if kind is None else kind.layer


def kernel_name(module) -> str:
  """The name of ``module``'s kernel Param attribute ('embedding' for an ``nnx.Embed``), from its kind.

  Args:
    module: a layer with a kind.

  Returns:
    The attribute name.
  """
  return kinds.resolve(module).kernel_name


def kernel_view(module, decomposition: str = "channel") -> MatrixView | str:
  """The view the factors of ``module``'s kernel are in, in the kernel's own shape, or the reason it has none.

  Args:
    module: a layer with a kind.
    decomposition: the conv view.

  Returns:
    The kind's ``view``: a ``MatrixView``, or a one-line reason (str).
  """
  return kinds.resolve(module).view(module, decomposition)


def unsupported(module) -> list[str]:
  """Why ``module`` cannot be held exactly as U, s, V by its SVD layer (empty when it can).

  Args:
    module: a layer with a kind, subclasses included (the parent's rules apply to them; ``subclass_reasons``
      adds the subclass rule).

  Returns:
    The reasons, e.g. ['feature_group_count=4']: the checks every kind shares (the kernel's shape, custom
    promote_dtype, precision, preferred_element_type), then the kind's ``reasons``, then why it has no view.
  """
  kind = kinds.resolve(module)
  if kind is None or not isinstance(module, kind.layer):
    return [f"nnx.{type(module).__name__} has no SVD form here (no layer kind is registered for it: "
            f"{', '.join(k.name for k in kinds.registered())} convert)"]
  reasons = []
  shape, expected = tuple(getattr(module, kind.kernel_name).shape), tuple(kind.kernel_shape(module))
  if shape != expected:
    reasons.append(f"kernel shape {shape} is not {expected} (stacked by nnx.vmap/nnx.scan?)")
  if getattr(module, "promote_dtype", dtypes.promote_dtype) is not dtypes.promote_dtype:
    reasons.append("a custom promote_dtype")
  if getattr(module, "precision", None) is not None:
    reasons.append(f"precision={module.precision}")
  if getattr(module, "preferred_element_type", None) is not None:
    reasons.append(f"preferred_element_type={module.preferred_element_type}")
  reasons += kind.reasons(module)
  if not reasons and isinstance(view := kind.view(module, "channel"), str):
    reasons.append(view)
  return reasons


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
  """An abstract input ``module``'s call accepts (its kind's ``probe``).

  Args:
    module: a layer with a kind.

  Returns:
    The ``jax.ShapeDtypeStruct``.
  """
  return kinds.resolve(module).probe(module)


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


__all__ = ["svd_layer_classes", "base_class", "kernel_name", "kernel_view", "unsupported", "subclass_reasons",
           "probe", "describe_layer", "subclass_to_svd"]
