"""Checkpoints of svdified Flax NNX models, in the jaxsvd checkpoint format (``jaxsvd.checkpoint``, format 2).

One step holds the items ``model`` ({'params': the ``nnx.Param`` values, 'model_state': every other variable —
BatchNorm statistics, rng counts, rng keys as key data}, as pure nested dicts), ``architecture`` (the
``record.Architecture`` of a user model: ``user`` = {framework 'nnx', module: the class name, svdify: {decomposition,
mode, sigma}}, ``ranks`` — which also name the converted layers — and ``original_ranks``) and ``meta`` (format_version,
library_version, step, the rng key implementations, the caller's ``run`` dict). ``jaxsvd.checkpoint.restore(path,
model=constructor)`` comes here for such a record.

  jaxsvd.checkpoint.nnx.save(workdir, model, step=100)
  restored = jaxsvd.checkpoint.restore(workdir, model=lambda: MyModel(rngs=nnx.Rngs(0)))  # fresh process: same outputs

Restore builds the abstract svdified model (``nnx.eval_shape`` of the constructor + ``svdify`` at the recorded
ranks, converting exactly the recorded layers), checks every leaf's shape against the stored metadata
(``jaxsvd.checkpoint.restore_item``: a mismatch names the leaf; nothing is truncated or padded) and merges the arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx
from flax.nnx import spmd as nnx_spmd

from jaxsvd.checkpoint import format as checkpoint
from jaxsvd.core.record import FORMAT_VERSION, Architecture
from jaxsvd.core.tree import leaves_by_path, map_with_path
from jaxsvd.nnx import kinds
from jaxsvd.nnx import svdifylib as svdify_nnx


def architecture(model: nnx.Module, original_ranks: dict[str, int] | None = None) -> Architecture:
  """The record of an svdified NNX model: its SVD spec and ranks read from the model itself.

  Args:
    model: a model after ``jaxsvd.nnx.svdify`` (and any pruning).
    original_ranks: {layer path: rank at conversion} (default: the current ranks).

  Returns:
    The ``Architecture`` (num_classes 0 and an empty input_shape: an NNX model is built by its constructor).

  Raises:
    ValueError: if the model has no SVD layers or its layers mix decompositions (each layer's kind says which it
      records: a conv its own, most kinds none), modes or sigmas.
  """
  layers = svdify_nnx.svd_modules(model)
  if not layers:
    raise ValueError("jaxsvd.checkpoint.nnx: the model has no SVD layers (run jaxsvd.nnx.svdify first)")
  decompositions = {kinds.resolve(m).decomposition(m) for m in layers.values()} - {None} or {"channel"}
  modes, sigmas = {m.mode for m in layers.values()}, {m.sigma for m in layers.values()}
  if len(decompositions) > 1 or len(modes) > 1 or len(sigmas) > 1:
    raise ValueError(f"jaxsvd.checkpoint.nnx: SVD layers mix decompositions {sorted(decompositions)}, modes "
                     f"{sorted(modes)} or sigmas {sorted(sigmas)}; one record holds one of each")
  ranks = svdify_nnx.ranks(model)
  settings = {"decomposition": decompositions.pop(), "mode": modes.pop(), "sigma": sigmas.pop(), "skip": [],
              "skip_pattern": None}
  user = {"framework": "nnx", "module": type(model).__qualname__, "svdify": settings, "call_kwargs": {},
          "input_dtype": None, "stack_shapes": {}}
  return Architecture(model=type(model).__qualname__, num_classes=0, input_shape=(), ranks=ranks,
                      original_ranks=dict(original_ranks or ranks), user=user)


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _arrays(state: nnx.State) -> dict:
  """{'params', 'model_state'} pure dicts of ``state`` (``model_state``: every non-Param variable)."""
  params, rest = state.split(nnx.Param, ...)
  return {"params": params.to_pure_dict(), "model_state": rest.to_pure_dict()}


def save(directory: str, model: nnx.Module, step: int = 0, original_ranks: dict[str, int] | None = None,
         run: dict | None = None) -> None:
  """Saves ``model``'s variables, its architecture record and ``run`` metadata as step ``step`` (synchronously).

  Args:
    directory: the checkpoint directory (steps are its subdirectories).
    model: the svdified NNX model.
    step: the step number.
    original_ranks: {layer path: rank at conversion}, for ``pruning.rank.Floors.min_decay`` after restore.
    run: JSON-able caller metadata stored in the ``meta`` item.

  Returns:
    None.

  Raises:
    ValueError: as ``architecture``.
  """
  record = architecture(model, original_ranks)
  arrays = _arrays(nnx.state(model))
  impls = {p: str(jax.random.key_impl(k)) for p, k in leaves_by_path(arrays).items() if _is_key(k)}
  arrays = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, arrays)
  meta = {**(run or {}), "format_version": FORMAT_VERSION, "library_version": checkpoint.library_version(),
          "step": int(step), "rng_impls": impls}
  with checkpoint.manager(directory, max_to_keep=1_000_000, async_save=False) as mngr:
    mngr.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave(arrays), architecture=ocp.args.JsonSave(record.to_json()),
        meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()


def restore(path: str, constructor: Callable[[], nnx.Module], step: int | None = None) -> checkpoint.Restored:
  """An svdified NNX model from a checkpoint, in a process that only knows the dense model's constructor.

  Args:
    path: the checkpoint directory (latest step unless ``step``) or one step's directory.
    constructor: builds the dense model, e.g. ``lambda: MyModel(rngs=nnx.Rngs(0))`` (only shapes and partitioning
      metadata are used: it runs abstractly, without eager sharding).
    step: which step.

  Returns:
    ``checkpoint.Restored``: ``model`` the svdified NNX model holding the stored variables, ``variables`` its
    {'params', 'model_state'} pure dicts, the ``architecture`` record, ``meta``, ``directory``, ``step``. Under a
    mesh (``jax.set_mesh``, Auto or Explicit axes, of any shape) the arrays are restored straight onto it, each
    sharded by its partitioning names (factors like their kernel: U's rows by the output axis, V's by the input
    axis, the rank axis replicated) and the rest replicated.

  Raises:
    CheckpointError: if the checkpoint is missing or unreadable, is not an NNX record, or a stored shape differs
      from the model built from its record (naming the leaf).
  """
  directory, step = checkpoint.resolve(path, step)
  meta = checkpoint.read_meta(directory, step)
  record = checkpoint.read_architecture(directory, step)
  where = f"{directory}/{step}"
  if (record.user or {}).get("framework") != "nnx":
    raise checkpoint.CheckpointError(f"{where} holds {record.model!r}, not an NNX model (use checkpoint.restore)")
  if not callable(constructor) or isinstance(constructor, nnx.Module):
    raise checkpoint.CheckpointError(f"{where} holds an NNX model ({record.user['module']}); pass a function "
                                     "building the dense model, e.g. lambda: MyModel(rngs=nnx.Rngs(0))")
  mesh = _caller_mesh()
  with nnx.use_eager_sharding(False):  # shapes only: no SVD of a sharded kernel, no abstract-mesh shardings
    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: _build(constructor, record, where)))
  abstract = jax.tree.map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                          _arrays(abstract_state), _arrays(_shardings(abstract_state, mesh)))
  abstract = jax.tree.map(lambda x: jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x, abstract)
  item = checkpoint.restore_item(directory, step, "model", abstract)
  impls = meta.get("rng_impls", {})
  item = map_with_path(lambda p, x: jax.random.wrap_key_data(x, impl=impls[p]) if p in impls else x, item)
  params, rest = abstract_state.split(nnx.Param, ...)
  params.replace_by_pure_dict(item["params"])
  rest.replace_by_pure_dict(item["model_state"])
  model = nnx.merge(graphdef, params, rest)
  return checkpoint.Restored(model, variables(model), record, meta, directory, step)


def _caller_mesh() -> jax.sharding.Mesh | None:
  """The concrete mesh the caller set (``jax.set_mesh``), or None."""
  try:
    mesh = jax.sharding.get_mesh()
  except ValueError:  # inside a trace
    return None
  return None if mesh.empty else mesh


def _shardings(abstract_state: nnx.State, mesh: jax.sharding.Mesh | None) -> nnx.State:
  """Each variable's target sharding on ``mesh``: its ``out_sharding`` names, logical names mapped by the rules in
  context (``nnx.logical_axis_rules``) as flax maps them, replicated where it has none; None without a mesh
  (restored where Orbax puts arrays by default)."""

  def sharding(variable):
    if mesh is None:
      return variable.replace(None)
    spec = nnx_spmd.get_var_pspec(variable) or jax.sharding.PartitionSpec()  # logical names through the rules
    return variable.replace(jax.sharding.NamedSharding(mesh, spec))

  return jax.tree.map(sharding, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def _build(constructor, record: Architecture, where: str) -> nnx.Module:
  """``constructor()`` svdified at the record's ranks (converting exactly the layers they name)."""
  model, settings = constructor(), record.user["svdify"]
  if type(model).__qualname__ != record.user["module"]:
    raise checkpoint.CheckpointError(f"{where}: record user.module={record.user['module']!r} but the constructor "
                                     f"builds a {type(model).__qualname__}")
  ranks = dict(record.ranks)
  svdify_nnx.svdify(model, ranks, settings["decomposition"], settings["mode"], skip_if=lambda p, _: p not in ranks,
                    sigma=settings.get("sigma", "signed"))  # records written before sigma existed: 'signed'
  return model


def variables(model: nnx.Module) -> dict[str, Any]:
  """{'params', 'model_state'} of ``model`` as pure dicts (what ``save`` stores, before rng keys become data).

  Args:
    model: an NNX model (typically svdified).

  Returns:
    {'params': the ``nnx.Param`` values, 'model_state': every other variable}, each as a pure nested dict.
  """
  return _arrays(nnx.state(model))


__all__ = ["architecture", "save", "restore", "variables"]
