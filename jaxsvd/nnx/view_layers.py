"""NNX SVD layers over any ``MatrixView`` of a kernel: ``EinsumSVD`` and subclasses with a kernel rebuilt from factors.

  EinsumSVD        ``nnx.Einsum`` 'lhs,kernel->out' whose kernel is a (stack of) matrix (``matrix_view.einsum_view``):
                   stack = kernel letters in lhs and out, U rows = letters only in out, V rows = letters only in lhs.
                   ``reconstruct``: one einsum with U·diag(s)·Vᵀ rebuilt to the kernel's shape; ``factored``: the
                   input contracted with V·diag(s) into a rank axis, then with U (``auto``: the fewer-MACs one).
  factor_kernel    a subclass of ``nnx.Linear``/``LinearGeneral``/``Conv``/``Embed``/``Einsum`` kept as it is, its
                   class swapped for a generated subclass whose kernel attribute (``kernel`` / ``embedding``) is a
                   property rebuilding U·diag(s)·Vᵀ: the subclass's own methods run on the rebuilt kernel, so the
                   execution is always ``reconstruct`` (the factored one would bypass how they use the kernel).

Factors are sharded like the kernel (``MatrixView.factor_names``: U rows by the output group's major axis, V rows by
the input group's, stack axes by their own names, the rank axis replicated).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsvd.core import svd
from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.structure import check_rank
from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.nnx import params
from jaxsvd.nnx.surface import KernelAttribute

_PROBE = {"active": False, "reads": 0}  # while a subclass is probed (``kernel_reads``): reads of its kernel


def view_factors(view: MatrixView, kernel, rank: int | None, where: str):
  """(U (*L, m, r), s (*L, r), V (*L, k, r)): the truncated SVD of each matrix of ``kernel`` in ``view``.

  Args:
    view: the kernel's ``MatrixView``.
    kernel: the dense kernel (concrete, or traced under ``nnx.eval_shape``).
    rank: r, or None for full rank.
    where: the layer named in errors.

  Returns:
    The factors (stack-less views go through ``layers.truncated_svd``: float64 on the host when concrete).

  Raises:
    ValueError: if ``rank`` exceeds min(m, k).
  """
  if not view.stack:
    return nnx_layers.truncated_svd(view.to_matrix(jnp.asarray(kernel, jnp.float32)), rank, where)
  rank = view.full_rank if rank is None else rank
  check_rank(f"{where}.rank", rank)
  if rank > view.full_rank:
    raise ValueError(f"{where}.rank={rank} exceeds min(m, n)={view.full_rank} of its matrices")
  return view.factors(jnp.asarray(kernel, jnp.float32), rank)


def factor_metadata(view: MatrixView, kernel_metadata) -> tuple[dict, dict, dict]:
  """Metadata of U, s, V from the kernel's sharding (``MatrixView.factor_names``; {} each when unsharded).

  Args:
    view: the kernel's view.
    kernel_metadata: the dense kernel Param's metadata.

  Returns:
    (U metadata, s metadata, V metadata).
  """
  base = params.sharding_metadata(kernel_metadata)
  if not base:
    return {}, {}, {}
  names = tuple(base["out_sharding"])
  names = names + (None,) * (len(view.kernel_shape) - len(names))  # fewer names than dims: trailing replicated
  return tuple({**base, "out_sharding": tuple(n)} for n in view.factor_names(names, None))


def _set_factors(module, view, kernel, rank, metadata, param_dtype):
  U, s, V = view_factors(view, kernel, rank, type(module).__name__)
  module.U, module.s, module.V = (params.make_param(a, param_dtype, m)
                                  for a, m in zip((U, s, V), factor_metadata(view, metadata)))


def view_kernel(layer) -> jax.Array:
  """U·diag(s)·Vᵀ of a layer with a ``view``, in the kernel's shape and the factors' dtype.

  Args:
    layer: an SVD layer holding U, s, V, ``sigma`` and its kernel's ``MatrixView`` as ``view``.

  Returns:
    The kernel, rebuilt.
  """
  s = svd.effective_s(layer.s[...], layer.sigma)
  return layer.view.to_kernel(layer.U[...], s, layer.V[...]).astype(layer.U.dtype)


class EinsumSVD(nnx_layers.SVDModule):
  """``nnx.Einsum`` with a fixed ``einsum_str`` as U, s, V in ``view`` (``matrix_view.einsum_view``), plus its bias;
  ``kernel`` reads U·diag(s)·Vᵀ in ``kernel_shape``."""

  kernel = KernelAttribute()
  dense_kernel = view_kernel

  def __init__(self, einsum_str: str, view: MatrixView, *, kernel, rank: int | None = None, bias=None,
               mode: str = "auto", dtype: Any = None, param_dtype: Any = jnp.float32, kernel_metadata=None,
               bias_metadata=None, sigma: str = "signed"):
    self._check(mode, sigma=sigma)
    self.einsum_str, self.view, self.mode = einsum_str.replace(" ", ""), view, mode
    self.kernel_shape, self.dtype, self.param_dtype = tuple(view.kernel_shape), dtype, param_dtype
    _set_factors(self, view, kernel, rank, kernel_metadata, param_dtype)
    self.bias = (nnx.data(None) if bias is None else
                 params.make_param(bias, param_dtype, params.sharding_metadata(bias_metadata)))

  def __call__(self, inputs: jax.Array, einsum_str: str | None = None, out_sharding=None) -> jax.Array:
    """``jnp.einsum(einsum_str, inputs, kernel) + bias`` with kernel = U·diag(s)·Vᵀ (``mode``)."""
    nnx_layers.no_sharding(self, out_sharding)
    if einsum_str is not None and einsum_str.replace(" ", "") != self.einsum_str:
      raise ValueError(f"EinsumSVD: built for {self.einsum_str!r}, called with {einsum_str!r}")
    x, U, s, V, b = self._promoted(inputs)
    lhs, out = self.einsum_str.split("->")[0].split(",")[0], self.einsum_str.split("->")[1]
    kernel_spec = self.einsum_str.split(",")[1].split("->")[0]
    if self._execution(x, lhs) == "reconstruct":
      y = jnp.einsum(self.einsum_str, x, self.view.to_kernel(U, s, V))
    else:
      y = _factored(x, U, s, V, self.view, lhs, kernel_spec, out)
    if b is not None:
      y = y + jnp.reshape(b, _bias_shape(out, kernel_spec, self.kernel_shape, y.ndim))
    return y

  @property
  def rank(self) -> int:
    """r, read from the last axis of ``s`` (s is (*L, r))."""
    return int(self.s.shape[-1])

  def _execution(self, x, lhs: str) -> str:
    """'reconstruct' or 'factored': ``mode``, or for 'auto' the one with fewer MACs at this input."""
    if self.mode != "auto":
      return self.mode
    (m, k), r, stack = self.view.matrix_shape, self.rank, math.prod(self.view.stack_shape)
    rows = x.size // max(1, k * stack)  # input positions per matrix
    return "reconstruct" if rows * m * k + m * k * r <= rows * r * (m + k) else "factored"


def _factored(x, U, s, V, view: MatrixView, lhs: str, kernel_spec: str, out: str):
  """The einsum as two contractions through a rank axis: x·(V·diag(s)) → t, then t·Uᵀ."""
  free = sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") - set(lhs + kernel_spec + out))[0]
  stack, ins, outs = ("".join(kernel_spec[a] for a in axes) for axes in (view.stack, view.inp, view.out))
  dims = lambda axes: tuple(view.kernel_shape[a] for a in axes)
  v = (V * s[..., None, :]).reshape(*dims(view.stack), *dims(view.inp), -1)
  u = U.reshape(*dims(view.stack), *dims(view.out), -1)
  mid = "".join(c for c in out if c not in outs) + free
  t = jnp.einsum(f"{lhs},{stack}{ins}{free}->{mid}", x, v)
  return jnp.einsum(f"{mid},{stack}{outs}{free}->{out}", t, u)


def _bias_shape(out: str, kernel_spec: str, kernel_shape, ndim: int) -> list[int]:
  """The bias broadcast to the output: a kernel letter's size at its output position, 1 elsewhere (``...`` too)."""
  if "..." in out:
    pre, post = out.split("...")
    return (_bias_shape(pre, kernel_spec, kernel_shape, len(pre)) + [1] * (ndim - len(pre) - len(post))
            + _bias_shape(post, kernel_spec, kernel_shape, len(post)))
  return [kernel_shape[kernel_spec.index(c)] if c in kernel_spec else 1 for c in out]


class FactorKernel:
  """Mixin of the generated classes of ``factor_kernel``: the rank, and the kernel rebuilt from U, s, V."""

  __slots__ = ()  # no instance layout of its own: a layer's ``__class__`` can be swapped to a generated class

  @property
  def rank(self) -> int:
    """r, read from the shape of ``s``."""
    return int(self.s.shape[-1])

  def dense_kernel(self) -> jax.Array:
    """U·diag(s)·Vᵀ in the kernel's shape (``view``), in the param dtype (a read counted by ``kernel_reads``)."""
    _PROBE["reads"] += _PROBE["active"]
    return view_kernel(self)


_CLASSES: dict[tuple[type, str], type] = {}


def factor_class(cls: type, kernel_name: str) -> type:
  """The generated subclass of ``cls`` (cached: one class per (cls, kernel_name), so graphdefs compare equal) whose
  ``kernel_name`` attribute is a ``surface.KernelAttribute`` (``FactorKernel.dense_kernel`` on read).

  Args:
    cls: the user's layer class (a subclass of a convertible nnx layer).
    kernel_name: 'kernel' or 'embedding'.

  Returns:
    The class, named like ``cls`` with an 'SVD' suffix.
  """
  key = (cls, kernel_name)
  if key not in _CLASSES:
    _CLASSES[key] = type(f"{cls.__name__}SVD", (cls, FactorKernel),
                         {kernel_name: KernelAttribute(), "__module__": cls.__module__})
  return _CLASSES[key]


def factor_kernel(module: nnx.Module, kernel_name: str, view: MatrixView, rank: int | None, mode: str,
                  sigma: str = "signed", decomposition: str = "channel") -> nnx.Module:
  """``module`` itself (changed in place) holding U, s, V instead of its kernel Param, its class swapped for
  ``factor_class``: every method of the subclass reads U·diag(s)·Vᵀ where it read the kernel.

  Args:
    module: the layer (its kernel Param is replaced; nothing else of it changes).
    kernel_name: its kernel attribute, 'kernel' or 'embedding'.
    view: the kernel's ``MatrixView``.
    rank: r, or None for full rank.
    mode: the svdify call's mode, kept for the record (the execution is always 'reconstruct').
    sigma: 'signed' or 'abs'.
    decomposition: the conv matrix view the factors are in.

  Returns:
    ``module``.
  """
  kernel = getattr(module, kernel_name)
  param_dtype = kernel.dtype
  _set_factors(module, view, kernel[...], rank, kernel.get_metadata(), param_dtype)
  delattr(module, kernel_name)
  module.view, module.mode, module.sigma, module.decomposition = view, mode, sigma, decomposition
  module.__class__ = factor_class(type(module), kernel_name)
  return module


def kernel_reads(module: nnx.Module, probe_input) -> int:
  """How often ``module`` (converted by ``factor_kernel``) reads its rebuilt kernel in one abstract call.

  Args:
    module: the converted layer.
    probe_input: a ``jax.ShapeDtypeStruct`` its ``__call__`` accepts (its kind's ``probe``).

  Returns:
    The number of reads (0: the call bypasses the kernel param).
  """
  graphdef, state = nnx.split(module)
  _PROBE.update(active=True, reads=0)
  try:
    jax.eval_shape(lambda st, x: nnx.merge(graphdef, st)(x), state, probe_input)
    return _PROBE["reads"]
  finally:
    _PROBE.update(active=False, reads=0)


__all__ = ["view_factors", "factor_metadata", "view_kernel", "EinsumSVD", "FactorKernel", "factor_class",
           "factor_kernel", "kernel_reads"]
