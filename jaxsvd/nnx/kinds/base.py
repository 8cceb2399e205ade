"""The NNX layer-kind registry: one ``Kind`` object per flax layer class, holding everything kind-specific.

A kind answers, for a layer of its class: the kernel shape its fields imply, why it has no exact SVD form (beyond
the checks every kind shares, ``jaxsvd.nnx.conversion.unsupported``), the matrix view of its kernel
(``jaxsvd.core.matrix_view``), the SVD layer it becomes (``to_svd``), the calibration statistics of one call's input
(``moments``, in the view's column space), the MACs of one call, an abstract input for the subclass probe, and the
decomposition a converted layer records in a checkpoint. ``register`` adds a kind; ``resolve`` finds the kind of a
module by its class's MRO (the most derived registered class wins, so a kind registered for a subclass overrides its
parent's), and of an SVD layer by the class ``to_svd`` builds. ``svdify``, calibration and checkpoints iterate or
resolve the registry: none of them names a layer class.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.registry import KindRegistry

_KINDS = KindRegistry()


class Kind:
  """The rules of one NNX layer class (subclass it, set the class attributes, ``register`` an instance).

  Attributes (class level): ``layer`` the flax class it matches (its instances and, through the subclass rule,
  its subclasses'), ``svd_layer`` the class ``to_svd`` builds (None, or another kind's: ``register``),
  ``kernel_name`` the kernel Param's attribute, ``calibrated`` whether data-aware compression
  (``jaxsvd.nnx.calibration``) measures it and allocates its rank (False: converted plainly by ``svdify``, left
  dense by ``compress``).
  """

  layer: type = type(None)
  svd_layer: type | None = None
  kernel_name: str = "kernel"
  calibrated: bool = True

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.layer.__module__}.{self.layer.__qualname__})"

  @property
  def name(self) -> str:
    """The flax class's name, e.g. 'Linear'."""
    return self.layer.__name__

  def kernel_shape(self, module) -> tuple[int, ...]:
    """The kernel shape ``module``'s fields imply (a kernel stacked by ``nnx.vmap``/``nnx.scan`` differs).

    Args:
      module: a layer of this kind.

    Returns:
      The shape (default: ``module.kernel_shape``).
    """
    return tuple(module.kernel_shape)

  def reasons(self, module) -> list[str]:
    """Why ``module`` has no exact SVD form, by this kind's own rules (default: none).

    Args:
      module: a layer of this kind (or a subclass).

    Returns:
      One-line reasons; empty when it converts.
    """
    return []

  def view(self, module, decomposition: str) -> MatrixView | str:
    """The ``MatrixView`` its factors are in, in the kernel's own shape, or the reason (str) it has none.

    Args:
      module: a layer of this kind.
      decomposition: the conv view, 'channel' or 'spatial' (kinds without one ignore it).

    Returns:
      The view or a one-line reason.
    """
    raise NotImplementedError(f"{type(self).__name__}.view")

  def to_svd(self, module, rank: int | None, decomposition: str, mode: str, sigma: str):
    """The SVD layer computing ``module``'s function from the truncated SVD of its kernel.

    Args:
      module: a layer of exactly ``layer``'s class, ``reasons`` empty.
      rank: r, or None for full rank.
      decomposition, mode, sigma: as ``jaxsvd.nnx.svdify``.

    Returns:
      The new layer (an instance of ``svd_layer``).

    Raises:
      ValueError: if ``rank`` exceeds the view's full rank.
    """
    raise NotImplementedError(f"{type(self).__name__}.to_svd")

  def moments(self, module, x, view: MatrixView):
    """The calibration moments of one call: (Σ x xᵀ (*L, k, k), Σ |x| (*L, k), count) over the vectors the view's
    matrices multiply (``jaxsvd.core.calibration.row_moments``), or None when it has none (default).

    Args:
      module: the dense layer being called.
      x: its input.
      view: its ``view``.

    Returns:
      The three float32 sums, or None.
    """
    return None

  def macs(self, module, x_shape, rank: int | None = None) -> dict[str, int]:
    """MACs of one call on an input of ``x_shape``: {'dense': the dense layer's, 'factored': through rank r}.

    The default applies ``view``'s matrices (m × k, stack L) once per output vector: y.size / (m·L) vectors of
    m·k MACs each (dense) or r·(m + k) (factored); y's shape from ``jax.eval_shape`` of the call. Right for
    Linear, LinearGeneral, Einsum and Conv (a conv's output vectors are its output positions).

    Args:
      module: a layer of this kind.
      x_shape: its input's shape.
      rank: r (None: the view's full rank).

    Returns:
      {'dense': int, 'factored': int}.
    """
    view = self.view(module, "channel")
    (m, k), stack = view.matrix_shape, math.prod(view.stack_shape)
    r = view.full_rank if rank is None else rank
    probe = self.probe(module)
    y = jax.eval_shape(lambda x: module(x), jax.ShapeDtypeStruct(tuple(x_shape), probe.dtype))
    vectors = math.prod(y.shape) // (m * stack)
    return {"dense": vectors * stack * m * k, "factored": vectors * stack * r * (m + k)}

  def probe(self, module) -> jax.ShapeDtypeStruct:
    """An abstract input ``module``'s call accepts (the subclass rule's probe call, the default ``macs``).

    Default: one float32 vector of the view's k columns, (1, k) (right for a matrix applied to the last axis).

    Args:
      module: a layer of this kind.

    Returns:
      The ``jax.ShapeDtypeStruct``.
    """
    return jax.ShapeDtypeStruct((1, self.view(module, "channel").matrix_shape[1]), np.float32)

  def decomposition(self, layer) -> str | None:
    """The decomposition a converted layer records in a checkpoint, or None when it has no choice (default).

    Args:
      layer: the converted layer (``svd_layer``, or a subclass converted in place).

    Returns:
      'channel', 'spatial' or None.
    """
    return None


def layer_args(module, rank: int | None, mode: str, sigma: str) -> dict:
  """The keyword arguments every ``jaxsvd.nnx.layers`` SVD layer takes from a dense layer with a kernel and a bias.

  Args:
    module: the dense layer (its ``kernel``, ``bias``, ``use_bias``, ``dtype``).
    rank, mode, sigma: the conversion's.

  Returns:
    {rank, use_bias, mode, sigma, dtype, param_dtype, kernel, bias, kernel_metadata, bias_metadata}.
  """
  bias = module.bias
  return dict(rank=rank, use_bias=module.use_bias, mode=mode, sigma=sigma, dtype=module.dtype,
              param_dtype=module.kernel.dtype, kernel=module.kernel[...], bias=None if bias is None else bias[...],
              kernel_metadata=module.kernel.get_metadata(), bias_metadata=None if bias is None else bias.get_metadata())


def register(kind: Kind) -> Kind:
  """Registers ``kind`` among the NNX kinds (``jaxsvd.core.registry.KindRegistry.register``: a later kind for the
  same class replaces it; a shared SVD layer keeps resolving to the kind that registered it first).

  Args:
    kind: the rule object.

  Returns:
    ``kind`` (so a module can keep it).

  Raises:
    TypeError: if ``kind.layer`` is not a class.
  """
  return _KINDS.register(kind)


def resolve(module) -> Kind | None:
  """The NNX kind of ``module``: its class's most derived registered class (``KindRegistry.resolve``).

  Args:
    module: any object.

  Returns:
    The ``Kind``, or None.
  """
  return _KINDS.resolve(module)


def registered() -> tuple[Kind, ...]:
  """The registered kinds, in registration order."""
  return tuple(_KINDS.by_layer.values())


def layer_classes() -> tuple[type, ...]:
  """The flax layer classes with a kind (what ``svdify`` reports on: converted, or left dense with why)."""
  return tuple(_KINDS.by_layer)


def svd_layer_classes() -> tuple[type, ...]:
  """The SVD layer classes the kinds build."""
  return tuple(_KINDS.by_svd_layer)


__all__ = ["Kind", "layer_args", "register", "resolve", "registered", "layer_classes", "svd_layer_classes"]
