"""Orbax checkpoints whose architecture is metadata.

One composite checkpoint per step with three items:
  model  params + model_state (batch stats)                 StandardSave
  train  opt_state, step, rng key data                      StandardSave
  meta   JSON: format_version, library_version, model {name, num_classes, svd}, ranks,
         epoch, step, history, best metric, experiment config   JsonSave
Restore reads ``meta`` first, rebuilds the model at the saved ranks, builds abstract targets with
``jax.eval_shape`` and restores the arrays into them: no predefined shapes. Shapes are checked
leaf by leaf against the stored array metadata first, so a mismatch names the leaf and nothing
is ever truncated or padded. Rotation (last N + best by metric) is Orbax's preservation policy;
atomicity (tmp dir + finalize) is Orbax's, so a process killed mid-save leaves the previous step.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

import jaxsvd
from jaxsvd import xla_options
from jaxsvd.models import SVDSpec, build_model, in_mode
from jaxsvd.train_state import EVAL_VARIANTS

FORMAT_VERSION = 1
_policies = ocp.checkpoint_managers


class CheckpointError(ValueError):
  """A checkpoint is missing, corrupt, or does not match the model it describes."""


def manager(directory: str, max_to_keep: int = 3, best_metric: str | None = None, best_mode: str = "max",
            async_save: bool = True) -> ocp.CheckpointManager:
  policies = [_policies.LatestN(n=max_to_keep)]
  if best_metric:
    policies.append(_policies.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min", n=1))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=_policies.AnyPreservationPolicy(policies),
      enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def model_meta(name: str, num_classes: int, svd: SVDSpec | None, inner_widths: dict | None = None) -> dict:
  return {"name": name, "num_classes": int(num_classes), "svd": None if svd is None else svd.to_dict(),
          "inner_widths": None if inner_widths is None else dict(inner_widths)}


def model_from_meta(meta: dict):
  m = meta["model"]
  svd = SVDSpec.from_dict(m["svd"])
  return build_model(m["name"], m["num_classes"], svd, ranks=meta.get("ranks") if svd else None,
                     inner_widths=m.get("inner_widths"))


def save(mngr: ocp.CheckpointManager, state, rng, meta: dict, metrics: dict | None = None) -> None:
  """Saves ``state`` (a TrainState) and ``meta`` at step ``meta['step']``."""
  meta = {**meta, "format_version": FORMAT_VERSION, "library_version": jaxsvd.__version__}
  model_item = {"params": state.params, "model_state": state.model_state}
  train_item = {"opt_state": state.opt_state, "step": state.step, "rng": jax.random.key_data(rng)}
  mngr.save(int(meta["step"]), metrics=metrics, args=ocp.args.Composite(
      model=ocp.args.StandardSave(model_item), train=ocp.args.StandardSave(train_item),
      meta=ocp.args.JsonSave(meta)))


def _resolve(path: str, step: int | None) -> tuple[str, int]:
  """(manager directory, step) from a run's checkpoint dir (latest) or one step's dir."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"no checkpoint at {path}")
  base = os.path.basename(path)
  if step is None and base.isdigit() and os.path.isdir(os.path.join(path, "meta")):
    return os.path.dirname(path), int(base)
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d, "meta")))
  if not steps:
    raise CheckpointError(f"no finalized checkpoint steps under {path}")
  if step is not None and step not in steps:
    raise CheckpointError(f"step {step} not in checkpoints {steps} under {path}")
  return path, steps[-1] if step is None else step


def read_meta(directory: str, step: int) -> dict:
  meta_dir = os.path.join(directory, str(step), "meta")
  try:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
      meta = ckptr.restore(meta_dir)
  except Exception as err:  # noqa: BLE001 - any read failure is a corrupt checkpoint
    raise CheckpointError(f"cannot read checkpoint metadata {meta_dir}: {err}") from err
  version = meta.get("format_version") if isinstance(meta, dict) else None
  if version != FORMAT_VERSION:
    raise CheckpointError(f"checkpoint metadata {meta_dir} has format_version={version!r}; "
                          f"this jaxsvd reads version {FORMAT_VERSION}")
  return meta


def _normalized_shapes(tree, is_leaf=None) -> dict[str, tuple]:
  def name(key):
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {"/".join(name(k) for k in path): tuple(leaf.shape) for path, leaf in flat}


def _check_shapes(item_dir: str, abstract: Any) -> None:
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      stored_tree = ckptr.metadata(item_dir).item_metadata.tree
  except Exception as err:  # noqa: BLE001
    raise CheckpointError(f"cannot read array metadata of {item_dir}: {err}") from err
  stored = _normalized_shapes(stored_tree, is_leaf=lambda x: hasattr(x, "shape"))
  expected = _normalized_shapes(abstract)
  for leaf in sorted(set(stored) | set(expected)):
    if leaf not in stored:
      raise CheckpointError(f"{item_dir}: leaf {leaf!r} expected by the model is missing from the checkpoint")
    if leaf not in expected:
      raise CheckpointError(f"{item_dir}: checkpoint leaf {leaf!r} does not exist in the model")
    if stored[leaf] != expected[leaf]:
      raise CheckpointError(f"{item_dir}: leaf {leaf!r} has shape {stored[leaf]} in the checkpoint but "
                            f"{expected[leaf]} in the model built from its metadata")


def restore_item(directory: str, step: int, item: str, abstract: Any) -> Any:
  item_dir = os.path.join(directory, str(step), item)
  _check_shapes(item_dir, abstract)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(item_dir, abstract)
  except Exception as err:  # noqa: BLE001
    raise CheckpointError(f"cannot restore {item_dir}: {err}") from err


@dataclasses.dataclass
class Restored:
  model: Any
  variables: dict
  meta: dict
  directory: str
  step: int


def abstract_variables(model, input_shape) -> dict:
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *input_shape), np.float32))


def restore_variables(directory: str, step: int, model, input_shape) -> dict:
  """The 'model' item as flax variables, restored into ``model``'s abstract shapes (no shapes stored in code)."""
  abstract = abstract_variables(model, input_shape)
  model_state = {k: v for k, v in abstract.items() if k != "params"}
  item = restore_item(directory, step, "model", {"params": abstract["params"], "model_state": model_state})
  return {"params": item["params"], **item["model_state"]}


def restore(path: str, step: int | None = None) -> Restored:
  """Model + variables from a checkpoint, in a process that knows nothing about the run."""
  directory, step = _resolve(path, step)
  meta = read_meta(directory, step)
  model = model_from_meta(meta)
  return Restored(model, restore_variables(directory, step, model, meta["input_shape"]), meta, directory, step)


def restore_train(directory: str, step: int, abstract_opt_state: Any) -> dict:
  """The 'train' item (opt_state, step, rng key) for resuming, given the abstract optimizer state."""
  abstract = {"opt_state": abstract_opt_state, "step": jax.ShapeDtypeStruct((), np.int32),
              "rng": jax.ShapeDtypeStruct((2,), np.uint32)}
  item = restore_item(directory, step, "train", abstract)
  item["rng"] = jax.random.wrap_key_data(item["rng"])
  return item


def load_for_inference(path: str, step: int | None = None) -> tuple[Callable, dict]:
  """(jitted apply(images) -> logits, metadata) from a checkpoint."""
  restored = restore(path, step)
  apply = xla_options.autotuned_jit(
      lambda x, mode: in_mode(restored.model.apply, mode)(restored.variables, x, train=False),
      variants=EVAL_VARIANTS)
  return apply, restored.meta
