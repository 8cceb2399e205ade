"""Functions resolved by name, so the core, ``pruning`` and ``training`` never import a framework (big_vision style).

A framework's package registers its functions when it is imported; ``lookup`` of a name not registered yet imports
the package that provides it (``PROVIDERS``, by module name with ``importlib``), so ``import jaxsvd`` loads neither
linen nor the zoo and a zoo checkpoint still restores in a fresh process:

  'zoo'          ``jaxsvd.models.build_model``: (name, num_classes, svd, ranks=, widths=, ...) → linen model
  'user/linen'   ``jaxsvd.linen.svdifylib.from_record``: (record, module) → the user's module in its saved form
  'macs/zoo'     ``jaxsvd.linen.budget.architecture_macs``: (record, SVD layer paths) → ``pruning.budget.MacsCounter``
  'mode/linen'   ``jaxsvd.linen.modes.in_mode``: (bound apply, mode) → the same model's apply in that SVD mode (not
                 imported on demand: only a loaded framework can have built the model; ``loaded('mode/')``)

``Architecture.build_model``, ``Architecture.build_user_model``, ``pruning.budget.MacsCounter.for_architecture`` and
``training.train_state.apply_in_mode`` look them up here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

_BUILDERS: dict[str, Callable] = {}
# name -> the module whose import registers it (the zoo's MACs are linen's: zoo models are linen models)
PROVIDERS = {"zoo": "jaxsvd.models", "user/linen": "jaxsvd.linen", "macs/zoo": "jaxsvd.linen"}


def register(name: str, builder: Callable) -> Callable:
  """Registers ``builder`` under ``name`` (the last registration of a name wins).

  Args:
    name: the builder's name, e.g. 'zoo' or 'user/linen'.
    builder: the function.

  Returns:
    ``builder`` unchanged (so it can decorate).
  """
  _BUILDERS[name] = builder
  return builder


def lookup(name: str) -> Callable:
  """The builder registered under ``name``, importing its provider (``PROVIDERS``) first if it is not registered.

  Args:
    name: as passed to ``register``.

  Returns:
    The builder.

  Raises:
    ValueError: one line naming ``name`` and the names that can be looked up.
  """
  if name not in _BUILDERS and name in PROVIDERS:
    importlib.import_module(PROVIDERS[name])
  if name not in _BUILDERS:
    raise ValueError(f"no builder {name!r} is registered (registered: {names()}); import its package")
  return _BUILDERS[name]


def names() -> tuple[str, ...]:
  """The names ``lookup`` resolves: those registered and those of ``PROVIDERS``, sorted."""
  return tuple(sorted({*_BUILDERS, *PROVIDERS}))


def loaded(prefix: str = "") -> tuple[str, ...]:
  """The names registered so far (their packages imported) that start with ``prefix``, sorted.

  Args:
    prefix: e.g. 'mode/'.

  Returns:
    The names, without importing any provider.
  """
  return tuple(sorted(n for n in _BUILDERS if n.startswith(prefix)))


class KindRegistry:
  """Layer kinds by layer class, shared by ``jaxsvd.linen.kinds`` and ``jaxsvd.nnx.kinds`` (one instance each).

  A kind is any object with a ``layer`` class and an ``svd_layer`` class (or None). ``resolve`` finds a module's kind
  by its class's MRO: the most derived registered class wins, a layer class or an SVD layer class.
  """

  def __init__(self):
    self.by_layer: dict[type, object] = {}
    self.by_svd_layer: dict[type, object] = {}

  def register(self, kind):
    """Registers ``kind`` for its ``layer`` class (and its ``svd_layer``); a later kind for the same class replaces
    it. A kind may reuse another kind's SVD layer: that layer keeps resolving to the kind that registered it first.

    Args:
      kind: the rule object.

    Returns:
      ``kind``.

    Raises:
      TypeError: if ``kind.layer`` is not a class.
    """
    if not isinstance(kind.layer, type) or kind.layer is type(None):
      raise TypeError(f"register: {type(kind).__name__}.layer must be the layer class it matches")
    self.by_layer[kind.layer] = kind
    owner = self.by_svd_layer.get(kind.svd_layer)
    if kind.svd_layer is not None and (owner is None or owner.layer is kind.layer):  # shared: its first kind keeps it
      self.by_svd_layer[kind.svd_layer] = kind
    return kind

  def resolve(self, module):
    """The kind of ``module`` (class doc), or None.

    Args:
      module: any object.

    Returns:
      The kind, or None.
    """
    for cls in type(module).__mro__:
      if cls in self.by_layer:
        return self.by_layer[cls]
      if cls in self.by_svd_layer:
        return self.by_svd_layer[cls]
    return None


__all__ = ["KindRegistry", "PROVIDERS", "loaded", "lookup", "names", "register"]
