"""The linen layer-kind registry: one ``Kind`` object per flax linen layer class, holding everything kind-specific.

A kind answers, for a layer of its class: its kernel param's name, why it stays dense before it runs (``reason``),
the matrix view of its kernel (``jaxsvd.core.matrix_view``), whether and how it runs natively as a zoo SVD layer
(``native``, ``native_call``, ``native_layer``, ``native_cost``: plain ``nn.Dense`` and 2-D ``nn.Conv``), the
calibration statistics of one call's input (``moments``), its MACs from its output (``macs``) and the geometry the
deploy path rewrites (``deploy_geometry``). ``register`` adds a kind; ``resolve`` finds the kind of a module by its
class's MRO (the most derived registered class wins), and of a zoo SVD layer (``DenseSVD``, ``ConvSVD``) by its class.
``svdify``, ``flops``, ``calibration`` and ``jaxsvd.deploy.folding`` resolve the registry: none of them names a layer
class.
"""

from __future__ import annotations

import math

from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.registry import KindRegistry

_KINDS = KindRegistry()


class Kind:
  """The rules of one linen layer class (subclass it, set the class attributes, ``register`` an instance).

  Attributes (class level): ``layer`` the flax class it matches (instances of it and of its subclasses),
  ``svd_layer`` the zoo SVD layer class that computes it natively (None: it runs the kernel way, its own
  ``__call__`` on U·diag(s)·Vᵀ rebuilt as its kernel param), ``kernel_name`` its kernel param's name.
  """

  layer: type = type(None)
  svd_layer: type | None = None
  kernel_name: str = "kernel"

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.layer.__module__}.{self.layer.__qualname__})"

  @property
  def name(self) -> str:
    """The flax class's name, e.g. 'Dense'."""
    return self.layer.__name__

  def reason(self, module, args: tuple, kwargs: dict) -> str | None:
    """Why ``module`` stays dense, known before it runs (default: a conv ``mask``), or None.

    Args:
      module: the layer being called.
      args, kwargs: its call arguments.

    Returns:
      A one-line reason, or None.
    """
    if getattr(module, "mask", None) is not None:
      return "the conv multiplies its kernel by a mask, so the kernel param is not the map it applies"
    return None

  def view(self, module, kernel_shape, decomposition: str, call: tuple | None = None) -> MatrixView | str:
    """The ``MatrixView`` of ``module``'s kernel of ``kernel_shape``, or the reason (str) it has none.

    Args:
      module: a layer of this kind.
      kernel_shape: the shape of its kernel param.
      decomposition: 'channel' or 'spatial' (kinds without a choice ignore it).
      call: (args, kwargs) of the call being converted, or None.

    Returns:
      The view or a one-line reason.
    """
    raise NotImplementedError(f"{type(self).__name__}.view")

  def native(self, module, x) -> bool:
    """Whether ``module`` runs as this kind's zoo SVD layer (all execution modes) on input ``x`` (default False).

    Args:
      module: the layer.
      x: its input (shape only).

    Returns:
      True or False.
    """
    return False

  def native_call(self, module, x, rank, settings):
    """(view, output) of ``module`` run natively from U, s, V created (or read) in its scope.

    Args:
      module: a layer for which ``native`` holds.
      x: its input.
      rank: r, or None for full rank.
      settings: the ``SVDModel`` (mode, sigma, init_scheme, decomposition).

    Returns:
      (its ``MatrixView``, its output with bias).
    """
    raise NotImplementedError(f"{type(self).__name__}.native_call")

  def native_layer(self, module, rank, settings):
    """The unbound zoo SVD layer ``module`` runs as (``SVDModel.svd_layer``), or None (default).

    Args:
      module: a layer of this kind.
      rank: its rank, or None.
      settings: the ``SVDModel``.

    Returns:
      The layer, or None.
    """
    return None

  def native_cost(self, module, x) -> tuple[int, int]:
    """(MACs, params) of one example through a native layer or its zoo SVD layer (``jaxsvd.linen.flops``).

    Args:
      module: the dense layer or ``svd_layer`` instance.
      x: its input (one example, batch axis 1).

    Returns:
      (MACs, params incl. bias); an SVD layer: its cheaper execution and min(r(m + k), mk) + bias.
    """
    raise NotImplementedError(f"{type(self).__name__}.native_cost")

  def moments(self, module, x, view: MatrixView):
    """The calibration moments of one call, or None when the kind has none (default).

    Args:
      module: the dense layer being called.
      x: its input.
      view: its ``MatrixView``.

    Returns:
      (Σ x xᵀ (*L, k, k), Σ |x| (*L, k), count), float32, or None.
    """
    return None

  def call_moments(self, module, x, view: MatrixView, call: tuple | None = None):
    """The calibration moments of one call given its arguments (default: ``moments`` of its input ``x``; a kind
    whose map depends on a call argument, e.g. an Einsum's string, overrides it).

    Args:
      module: the dense layer being called.
      x: its input.
      view: its ``MatrixView``.
      call: (args, kwargs) of the call, or None.

    Returns:
      As ``moments``.
    """
    return self.moments(module, x, view)

  def macs(self, module, method: str, y_shape, view: MatrixView) -> tuple[int, int]:
    """(dense MACs, matrix applications) of one call with output shape ``y_shape`` (``jaxsvd.linen.flops``).

    Default: y.size·k MACs, y.size / m applications of the m × k matrices.

    Args:
      module: the layer.
      method: the method called ('__call__', 'attend').
      y_shape: its output's shape.
      view: its ``MatrixView``.

    Returns:
      (MACs, applications): a factored layer then costs applications·r·(m + k).
    """
    m, k = view.matrix_shape
    out = math.prod(y_shape)
    return out * k, out // m

  def deploy_geometry(self, module, x):
    """(dense kernel shape, strides, pads) of a layer the deploy path rewrites (strides and pads None for a dense
    layer), or None when it runs unchanged (default).

    Args:
      module: the layer (or its zoo SVD layer).
      x: its input.

    Returns:
      The geometry, or None.
    """
    return None


def register(kind: Kind) -> Kind:
  """Registers ``kind`` among the linen kinds (``jaxsvd.core.registry.KindRegistry.register``: a later kind for the
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
  """The linen kind of ``module``: its class's most derived registered class (``KindRegistry.resolve``).

  Args:
    module: any object.

  Returns:
    The ``Kind``, or None.
  """
  return _KINDS.resolve(module)


def registered() -> tuple[Kind, ...]:
  """The registered kinds, in registration order."""
  return tuple(_KINDS.by_layer.values())


__all__ = ["Kind", "register", "resolve", "registered"]
