"""NNX Params of the SVD layers: placed on the mesh when sharded, with the dense kernel's sharding carried to U, s, V.

  make_param          ``nnx.Param`` in a dtype with metadata, placed so flax's eager sharding can constrain it
  sharding_metadata   the sharding metadata of a dense Param worth carrying over
  factor_sharding     U, s, V metadata from the kernel's (U rows: an output axis' name, V rows: an input axis')
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def on_device(x) -> bool:
  """Whether ``x`` must stay a JAX array: a traced value, or an array no one process holds whole.

  Args:
    x: an array.

  Returns:
    True for a tracer or an array sharded over several processes.
  """
  return isinstance(x, jax.core.Tracer) or isinstance(x, jax.Array) and not x.is_fully_addressable


def to_host(x):
  """``x`` as a NumPy array when one process holds it whole (no eager XLA op per shape), else as it is.

  Args:
    x: an array.

  Returns:
    A NumPy array, or ``x`` when ``on_device``.
  """
  return x if on_device(x) else np.asarray(x)


def make_param(value, dtype, metadata: dict):
  """``nnx.Param(value)`` in ``dtype`` with ``metadata``; under a mesh the value is first placed replicated on it, so
  flax's eager sharding can constrain (Auto axes) or reshard (Explicit axes) it to its ``out_sharding`` — a host-made
  single-device array cannot be constrained to a mesh sharding. Outside any mesh the partition names are kept as
  metadata only (flax's eager sharding would refuse them).

  Args:
    value: the array.
    dtype: the param dtype.
    metadata: the Param's metadata (``out_sharding``, ``mesh``, ...).

  Returns:
    The ``nnx.Param``.
  """
  value = jnp.asarray(value, dtype)
  if metadata.get("out_sharding") is not None and jax.sharding.get_abstract_mesh().empty:
    with nnx.use_eager_sharding(False):  # no mesh: keep the names, as the layer converted from kept them
      return nnx.Param(value, **metadata)
  if metadata.get("out_sharding") is not None:
    try:
      mesh = jax.sharding.get_mesh()
    except ValueError:  # inside a trace (jit, eval_shape): flax constrains the traced value itself
      mesh = None
    if mesh is not None and not mesh.empty and not isinstance(value, jax.core.Tracer):
      value = jax.device_put(value, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  return nnx.Param(value, **metadata)


def sharding_metadata(metadata, key: str = "out_sharding") -> dict:
  """The sharding metadata of a dense Param worth carrying over.

  Args:
    metadata: the dense Param's metadata (or None).
    key: the sharding key.

  Returns:
    {``out_sharding``, ``mesh``} present in ``metadata``; {} if unsharded.
  """
  metadata = metadata or {}
  return {k: metadata[k] for k in (key, "mesh") if metadata.get(k) is not None} if metadata.get(key) else {}


def factor_sharding(kernel_metadata, u_axis: int | None, v_axis: int | None) -> tuple[dict, dict, dict]:
  """Metadata of U, s, V derived from the dense kernel's: U's rows take the name of kernel axis ``u_axis`` (the
  leading axis of the flattened output group), V's rows that of ``v_axis`` (the input group's); the rank axis is
  replicated, so a sharded dense model stays sharded the same way along its input/output dimensions.

  Args:
    kernel_metadata: the dense kernel Param's metadata (its ``out_sharding``: one mesh axis name or None per axis).
    u_axis, v_axis: kernel axes naming U's and V's rows (None: replicated).

  Returns:
    (U metadata, s metadata, V metadata): {} each when the kernel is not sharded.
  """
  base = sharding_metadata(kernel_metadata)
  if not base:
    return {}, {}, {}
  names = tuple(base["out_sharding"])  # may be shorter than the kernel's rank: the trailing axes are replicated
  named = lambda axis: {**base, "out_sharding": (names[axis] if axis is not None and axis < len(names) else None,
                                                 None)}
  return named(u_axis), {**base, "out_sharding": (None,)}, named(v_axis)


__all__ = ["on_device", "to_host", "make_param", "sharding_metadata", "factor_sharding"]
