"""Restore a model from a checkpoint with nothing but its directory: the record builds it, ``jax.eval_shape`` gives
the targets, the arrays are restored into them (zoo models, a user's linen module, a user's NNX model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core import meta as meta_lib

from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.checkpoint.format import CheckpointError, Restored, read_architecture, read_meta, resolve, restore_item
from jaxsvd.core import structure
from jaxsvd.core.record import Architecture


def abstract_variables(model, input_shape, input_dtype="float32", mesh: jax.sharding.Mesh | None = None,
                       rules: Sequence[tuple[str, Any]] | None = None, **init_kwargs) -> dict:
  """``jax.eval_shape`` of ``model.init`` on one example of ``input_shape``: the variables' shapes, no arrays.

  Args:
    model: a linen module.
    input_shape: one example's shape without the batch dimension.
    input_dtype: the input's dtype (e.g. 'int32' for token ids).
    mesh: if given, each leaf also gets its ``NamedSharding`` on ``mesh``: a ``nn.Partitioned`` box's axis names
      as they are, a ``nn.LogicallyPartitioned`` box's logical names through ``rules``, unboxed leaves replicated.
    rules: the logical axis rules (``nn.logical_axis_rules`` form); None: the rules in flax's context.
    **init_kwargs: passed to ``model.init`` as they are, not traced (e.g. ``train=False``).

  Returns:
    The variables dict with ``jax.ShapeDtypeStruct`` leaves (metadata boxes such as ``nn.Partitioned`` removed),
    for an input of shape (1, *input_shape).
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), np.dtype(input_dtype))
  boxed = jax.eval_shape(lambda k, x: model.init(k, x, **init_kwargs), jax.random.key(0), x)
  return jax.tree.map(lambda leaf: _target(leaf, mesh, rules), boxed,
                      is_leaf=lambda leaf: isinstance(leaf, meta_lib.AxisMetadata))


def _target(leaf, mesh: jax.sharding.Mesh | None, rules) -> jax.ShapeDtypeStruct:
  """A leaf of ``jax.eval_shape``'s tree (boxed or not) as a ``ShapeDtypeStruct``, sharded on ``mesh`` if given
  (the box's value read as it is: ``unbox`` would add a sharding constraint, meaningless on a shape)."""
  value = structure.unboxed(leaf)
  if mesh is None:
    return jax.ShapeDtypeStruct(value.shape, value.dtype)
  spec = jax.sharding.PartitionSpec()
  if isinstance(leaf, nn.LogicallyPartitioned):
    spec = nn.logical_to_mesh_axes(leaf.names, rules)
  elif isinstance(leaf, meta_lib.Partitioned):
    spec = leaf.get_partition_spec()
  return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=jax.sharding.NamedSharding(mesh, spec))


def restore_variables(directory: str, step: int, model, input_shape, input_dtype="float32",
                      mesh: jax.sharding.Mesh | None = None, rules: Sequence[tuple[str, Any]] | None = None,
                      **init_kwargs) -> dict:
  """The 'model' item as flax variables, restored into ``model``'s abstract shapes (no shapes stored in code).

  Args:
    directory: the manager directory (from ``resolve``).
    step: the step.
    model: the linen module built from the step's architecture record.
    input_shape: one example's shape without the batch dimension.
    input_dtype: the input's dtype.
    mesh, rules: restore straight onto ``mesh``, each leaf sharded as its partitioning box says
      (``abstract_variables``); None: every leaf on the default device.
    **init_kwargs: passed to ``model.init`` for the abstract shapes (static call arguments, e.g. ``train=False``).

  Returns:
    {'params': ..., plus every other variable collection (e.g. 'batch_stats')}.

  Raises:
    CheckpointError: as ``restore_item``.
  """
  abstract = abstract_variables(model, input_shape, input_dtype, mesh, rules, **init_kwargs)
  model_state = {k: v for k, v in abstract.items() if k != "params"}
  item = restore_item(directory, step, "model", {"params": abstract["params"], "model_state": model_state})
  return {"params": item["params"], **item["model_state"]}


def restore(path: str, step: int | None = None, model: Any = None, mesh: jax.sharding.Mesh | None = None,
            rules: Sequence[tuple[str, Any]] | None = None) -> Restored:
  """Model + variables from a checkpoint, in a process that knows nothing about the run.

  Args:
    path: a run's checkpoint directory (latest step unless ``step``) or one step's directory.
    step: which step.
    model: for a user model's checkpoint (record ``user``), the user's module (e.g. ``MyNet()``); the record gives
      its SVD form, ranks, stack shapes and call arguments. Must be None for a zoo model's. For an NNX model's
      (record ``user.framework`` 'nnx'), a function building the dense model (``jaxsvd.checkpoint.nnx.restore``).
    mesh: a linen model's arrays are restored straight onto ``mesh`` (any shape; not the one saved from),
      each sharded as its partitioning box says, so no host ever holds a whole sharded array. An NNX model is
      restored onto the mesh set with ``jax.set_mesh`` instead.
    rules: the logical axis rules for ``nn.with_logical_partitioning`` names; None: flax's context rules.

  Returns:
    ``Restored`` (model, variables, architecture record, run metadata, directory, step); for a user model,
    ``model`` is the module in the form it was saved in (e.g. its ``jaxsvd.linen.SVDModel``).

  Raises:
    CheckpointError: if the checkpoint is missing, unreadable, or does not match its architecture record, or
      ``model`` is missing (or given) for a user (zoo) model's checkpoint, or of another class or stack shape.
  """
  directory, step = resolve(path, step)
  meta = read_meta(directory, step)
  architecture = read_architecture(directory, step)
  if (architecture.user or {}).get("framework") == "nnx":
    return checkpoint_nnx.restore(path, model, step)
  if architecture.user is None:
    if model is not None:
      raise CheckpointError(f"{directory}/{step} holds the zoo model {architecture.model!r}; do not pass model=")
    model = architecture.build_model()
    variables = restore_variables(directory, step, model, architecture.input_shape, mesh=mesh, rules=rules)
  else:
    model, variables = _restore_user(directory, step, architecture, model, mesh, rules)
  return Restored(model, variables, architecture, meta, directory, step)


def _restore_user(directory: str, step: int, architecture: Architecture, module: Any, mesh, rules) -> tuple[Any, dict]:
  user = architecture.user
  where = f"{directory}/{step}"
  if module is None:
    raise CheckpointError(f"{where} holds a user model ({user['module']}); pass it: restore(path, model=...)")
  try:
    model = architecture.build_user_model(module)
  except ValueError as err:
    raise CheckpointError(f"{where}: {err}") from None
  args = (architecture.input_shape, user.get("input_dtype", "float32"))
  abstract = abstract_variables(model, *args, **user.get("call_kwargs", {}))
  stacks = {k: list(v) for k, v in structure.stack_shapes(abstract["params"]).items()}
  if stacks != user.get("stack_shapes", {}):
    raise CheckpointError(f"{where}: stacked layers {user.get('stack_shapes')} in the record but {stacks} in the "
                          f"module passed (its scan/vmap lengths or groups differ)")
  return model, restore_variables(directory, step, model, *args, mesh=mesh, rules=rules, **user.get("call_kwargs", {}))


__all__ = ["abstract_variables", "restore", "restore_variables"]
