"""A converted NNX layer keeps the public surface of the layer it replaced.

Research code reads its layers' kernels (``head_dim = self.attn_vec_einsum.kernel.shape[1]``, tied logits
``x @ self.embed.embedding[...].T``) and configuration (``in_features``, ``einsum_str``, ``precision``, ...). After
``svdify`` the layer holds U, s, V instead of a kernel Param, so:

  KernelAttribute   the class attribute ``kernel`` (``embedding`` for ``EmbedSVD``): each read returns a
                    ``KernelView`` of W = U·diag(s)·Vᵀ in the replaced kernel's shape and dtype, computed on read
                    (never stored: the state holds only U, s, V); assigning it raises one line
  KernelView        an ``nnx.Variable`` holding that reconstruction: ``.shape``, ``.dtype``, ``[...]``, ``.value``,
                    ``get_value()``, ``@``, ``.T`` and ``jnp`` functions work as on the kernel Param; writing
                    (``view[...] = x``, ``set_value``) raises one line — change U, s, V instead
  keep_configuration the dense layer's plain configuration attributes copied onto its SVD layer where the SVD layer
                    has none of its own (arrays, Variables and modules are never copied)
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx


def read_only_message(owner: str, name: str) -> str:
  """The one-line error of a write to a converted layer's kernel.

  Args:
    owner: the layer's class name.
    name: 'kernel' or 'embedding'.

  Returns:
    The message.
  """
  return (f"{owner}.{name} is read-only: the layer holds U, s, V and its {name} is U·diag(s)·Vᵀ computed on read; "
          f"assign U, s, V (or prune with jaxsvd.nnx.prune) instead")


class KernelView(nnx.Variable):
  """A converted layer's kernel, rebuilt from its factors on read (module doc). Not part of any module's state."""

  def __setitem__(self, index, value):
    raise AttributeError(read_only_message(self.get_metadata().get("owner", "layer"),
                                           self.get_metadata().get("name", "kernel")))

  def set_value(self, *args, **kwargs):
    """Raises: the view is read-only."""
    raise AttributeError(read_only_message(self.get_metadata().get("owner", "layer"),
                                           self.get_metadata().get("name", "kernel")))


class KernelAttribute:
  """The data descriptor ``kernel`` / ``embedding`` of an SVD layer class (module doc).

  The class must define ``dense_kernel()``: U·diag(s)·Vᵀ in the replaced kernel's shape and param dtype.
  """

  def __set_name__(self, owner: type, name: str):
    self.name = name

  def __get__(self, layer, owner: type | None = None):
    if layer is None:
      return self
    return KernelView(layer.dense_kernel(), owner=type(layer).__name__, name=self.name)

  def __set__(self, layer, value):
    raise AttributeError(read_only_message(type(layer).__name__, self.name))

  def __delete__(self, layer):
    raise AttributeError(read_only_message(type(layer).__name__, self.name))


def _is_configuration(value) -> bool:
  """True for a plain attribute worth carrying over: not an array, Variable, module or collection of them."""
  leaves = jax.tree_util.tree_leaves(value, is_leaf=lambda x: isinstance(x, (nnx.Variable, nnx.Module)))
  return not any(isinstance(x, (nnx.Variable, nnx.Module, jax.Array, np.ndarray)) for x in leaves)


def keep_configuration(dense: nnx.Module, converted: nnx.Module) -> nnx.Module:
  """``converted`` with each public plain attribute of ``dense`` it lacks (``precision``, ``dot_general``,
  ``bias_shape``, ...), so code reading the replaced layer's configuration keeps working.

  Args:
    dense: the layer being replaced.
    converted: its SVD layer (changed in place).

  Returns:
    ``converted``.
  """
  own = vars(converted)
  for name, value in vars(dense).items():
    if name.startswith("_") or name in own or hasattr(type(converted), name) or not _is_configuration(value):
      continue
    setattr(converted, name, value)
  return converted


__all__ = ["read_only_message", "KernelView", "KernelAttribute", "keep_configuration"]
