"""Orbax checkpoints that own their architecture record: restoring needs nothing but the directory.

One composite checkpoint per step (format version 2), four items:
  model         params + model_state (batch stats)                  StandardSave (arrays)
  train         opt_state, step, rng key data                       StandardSave (arrays)
  architecture  the ``record.Architecture`` as JSON (model, classes, input shape, SVD spec, ranks,
                original ranks, inner widths, pruned channels, format_version; documented in ``jaxsvd.core.record``)
  meta          JSON: format_version, library_version, step, plus whatever the caller passes as ``run``
                (the experiment stores epoch, history, pruning events, best metric and its config there)
Restore (``jaxsvd.checkpoint.restoring``) reads ``architecture``, builds the model, builds abstract targets with
``jax.eval_shape`` and restores the arrays into them: no predefined shapes. Shapes are checked leaf by leaf against the
stored array metadata first, so a mismatch names the leaf and nothing is ever truncated or padded.
Format version 1 (no ``architecture`` item; the record's fields inside ``meta``) still restores: the record
is converted on read. Rotation (last N + best by metric) is Orbax's preservation policy; the metric is also
passed as Orbax's ``best_fn`` so Orbax stores it in each step (its ``metrics`` item) and the policy sees it again
after a restart. Atomicity (tmp dir + rename) is Orbax's, so a process killed mid-save leaves the previous step.
Integrity (``jaxsvd.checkpoint.integrity``): each step commits a CRC-32 of every item file; every read verifies
the item's files first (one-line error naming the step and file); non-finite params or model state are never saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import weakref
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax.core import meta as meta_lib

from jaxsvd.checkpoint import integrity
from jaxsvd.checkpoint.integrity import CheckpointError, CheckpointSaveError, first_line  # noqa: F401 (CheckpointError: API)
from jaxsvd.core.record import FORMAT_VERSION, READABLE_VERSIONS, Architecture, FormatError
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.version import __version__

_policies = ocp.checkpoint_managers
_in_flight: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # manager -> the step its last save() wrote


_BENIGN_WARNINGS = (
    "Requested `tracked_metric`",  # a step saved without the best-checkpoint metric: mid-epoch ones, by design
    "Metadata file does not exist",  # a restore of an item written without Orbax's optional _CHECKPOINT_METADATA
)


class _QuietOrbax(logging.Filter):
  """Drops Orbax's tracebacks of a storage failure (``save``/``wait``/``check`` raise it as one line) and its
  ``_BENIGN_WARNINGS``."""

  def filter(self, record: logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    if record.levelno == logging.WARNING and record.getMessage().startswith(_BENIGN_WARNINGS):
      return False
    if record.levelno < logging.ERROR:
      return True
    failure = record.exc_info[1] if record.exc_info else None
    return integrity.storage_error(failure or Exception(record.getMessage())) is None


logging.getLogger("absl").addFilter(_QuietOrbax())


def manager(directory: str, max_to_keep: int = 3, best_metric: str | None = None, best_mode: str = "max",
            async_save: bool = True) -> ocp.CheckpointManager:
  """An Orbax manager keeping the last ``max_to_keep`` steps and, with ``best_metric``, the best one.

  Args:
    directory: the run's checkpoint directory (made absolute).
    max_to_keep: how many of the latest steps to keep.
    best_metric: the key in ``save``'s ``metrics`` that ranks checkpoints (None: no best-checkpoint policy).
    best_mode: 'min' keeps the lowest metric; any other value the highest.
    async_save: whether saves are asynchronous.

  Returns:
    The ``ocp.CheckpointManager``; a step is kept if either policy keeps it.
  """
  policies = [_policies.LatestN(n=max_to_keep)]
  best_fn = (lambda m: m[best_metric]) if best_metric else None
  if best_metric:  # steps without a stored metric (written before it was stored) fall to LatestN alone
    policies.append(_policies.BestN(get_metric_fn=best_fn, reverse=best_mode == "min", n=1,
                                    keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=_policies.AnyPreservationPolicy(policies), best_fn=best_fn,
      best_mode="min" if best_mode == "min" else "max", enable_async_checkpointing=async_save,
      cleanup_tmp_directories=True, temporary_path_class=integrity.ChecksummedTemporaryPath)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(mngr: ocp.CheckpointManager, state, rng, architecture: Architecture, run: dict | None = None,
         metrics: dict | None = None) -> None:
  """Saves ``state`` (a ``TrainState``), its architecture record and ``run`` metadata at ``state.step``.

  Args:
    mngr: from ``manager``.
    state: the host (unreplicated) train state.
    rng: the run's PRNG key: typed (any implementation: threefry, rbg, ...) or a raw uint32 key array.
    architecture: the record ``state.params`` was built from.
    run: JSON-able caller metadata stored in the ``meta`` item.
    metrics: for the manager's best-checkpoint policy.

  Returns:
    None. The step's items are ``model``, ``train``, ``architecture`` and ``meta`` (see the module doc).

  Raises:
    CheckpointError: if a param or model-state leaf holds NaN or ±Inf (nothing is written).
    CheckpointSaveError: one line (path, reason, free space) if this or the previous async save failed to write.
  """
  step = int(jax.device_get(state.step))
  meta = {**(run or {}), "format_version": FORMAT_VERSION, "library_version": library_version(), "step": step,
          "rng": _rng_meta(rng)}
  model_item = meta_lib.unbox({"params": state.params, "model_state": state.model_state})
  bad = integrity.nonfinite_leaves(model_item)
  if bad:
    raise CheckpointError(f"refusing to save step {step}: non-finite values in {', '.join(bad[:3])}"
                          f"{' ...' if len(bad) > 3 else ''}")
  train_item = {"opt_state": state.opt_state, "step": state.step, "rng": np.asarray(jax.random.key_data(rng))}
  args = ocp.args.Composite(
      model=ocp.args.StandardSave(model_item), train=ocp.args.StandardSave(train_item),
      architecture=ocp.args.JsonSave(architecture.to_json()), meta=ocp.args.JsonSave(meta))
  wait(mngr)  # a failure of the save in flight is reported as that step's
  _in_flight[mngr] = step
  with _save_errors(mngr):
    mngr.save(step, metrics=metrics, args=args)


def wait(mngr: ocp.CheckpointManager) -> None:
  """``mngr.wait_until_finished()``, a failed async save raised as a one-line ``CheckpointSaveError``.

  Args:
    mngr: from ``manager``.

  Raises:
    CheckpointSaveError: if the save in flight failed to write (disk full, I/O error).
  """
  with _save_errors(mngr):
    mngr.wait_until_finished()


def check(mngr: ocp.CheckpointManager) -> None:
  """Raises the failure of an asynchronous save that has already ended, without waiting for one in flight.

  Cheap enough to call after every training step, so a failed save stops the run at once, not one save later.

  Args:
    mngr: from ``manager``.

  Raises:
    CheckpointSaveError: one line (the failed step, path, reason, free space, latest complete step).
  """
  with _save_errors(mngr):
    mngr.check_for_errors()


@contextlib.contextmanager
def _save_errors(mngr):
  """Turns a storage failure during a save (also one surfacing from an earlier async save) into one line."""
  try:
    yield
  except Exception as err:
    if not (isinstance(err, OSError) or integrity.storage_error(err) is not None):
      raise
    directory = os.fspath(mngr.directory)
    done = steps(directory) if os.path.isdir(directory) else []
    latest = f"the latest complete checkpoint is step {done[-1]}" if done else "no checkpoint is complete"
    step = _in_flight.pop(mngr, None)
    what = "a checkpoint" if step is None else f"checkpoint step {step}"
    raise CheckpointSaveError(f"{integrity.save_failure(err, directory, what)}; {latest}") from None


def _rng_meta(rng) -> dict:
  """How to rebuild ``rng`` from its key data: implementation name (None: a raw uint32 key), data shape and dtype."""
  typed = jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
  data = jax.random.key_data(rng)
  return {"impl": str(jax.random.key_impl(rng)) if typed else None, "shape": list(data.shape), "dtype": str(data.dtype)}


def library_version() -> str:
  """The jaxsvd version that writes checkpoints (stored in each step's meta)."""
  return __version__


def resolve(path: str, step: int | None = None) -> tuple[str, int]:
  """(manager directory, step) from a run's checkpoint dir (latest step, or ``step``) or one step's dir.

  A finalized step is a digit-named subdirectory holding a ``meta`` item.

  Args:
    path: a run's checkpoint directory, or one step's directory (then ``step`` must be None).
    step: the step wanted (None: the latest, or the step whose directory ``path`` is).

  Returns:
    (absolute manager directory, step).

  Raises:
    CheckpointError: if ``path`` is not a directory, holds no finalized step, or lacks ``step``.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"no checkpoint at {path}{_how_to_make(path)}")
  base = os.path.basename(path)
  if step is None and base.isdigit() and os.path.isdir(os.path.join(path, "meta")):
    return os.path.dirname(path), int(base)
  found = steps(path)
  if not found:
    raise CheckpointError(f"no finalized checkpoint steps under {path}{_how_to_make(path)}")
  if step is not None and step not in found:
    raise CheckpointError(f"step {step} not in checkpoints {found} under {path}")
  return path, found[-1] if step is None else step


def _how_to_make(path: str) -> str:
  """The end of a 'no checkpoint' message: the command that writes one (a training run's ``--workdir``)."""
  workdir = os.path.dirname(path) if os.path.basename(path) == "checkpoints" else path
  return (f" (a training run writes them: python -m experiments.cifar_svd --config=NAME --workdir={workdir}, "
          f"or jaxsvd.checkpoint.save)")


def steps(directory: str) -> list[int]:
  """The finalized steps (digit-named subdirectories holding a ``meta`` item) of a manager directory, ascending.

  Args:
    directory: the manager directory (it must exist).

  Returns:
    The step numbers as ints, ascending (empty if there is none).
  """
  return sorted(int(d) for d in os.listdir(directory)
                if d.isdigit() and os.path.isdir(os.path.join(directory, d, "meta")))


def _read_json(item_dir: str) -> Any:
  integrity.verify_item(os.path.dirname(item_dir), os.path.basename(item_dir))
  try:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
      return ckptr.restore(item_dir)
  except Exception as err:  # noqa: BLE001 - any read failure is a corrupt checkpoint
    raise CheckpointError(f"cannot read checkpoint metadata {item_dir}: {first_line(err)}") from None


def read_meta(directory: str, step: int) -> dict:
  """The ``meta`` item (run metadata) of a step; a one-line error names an unreadable format version.

  Args:
    directory: the manager directory (from ``resolve``).
    step: the step.

  Returns:
    The metadata dict (the caller's ``run`` plus format_version, library_version, step).

  Raises:
    CheckpointError: if the item cannot be read or its format_version is not one of ``READABLE_VERSIONS``.
  """
  meta_dir = os.path.join(directory, str(step), "meta")
  meta = _read_json(meta_dir)
  version = meta.get("format_version") if isinstance(meta, dict) else None
  if version not in READABLE_VERSIONS:
    raise CheckpointError(f"checkpoint metadata {meta_dir} has format_version={version!r}; "
                          f"this jaxsvd reads versions {READABLE_VERSIONS}")
  return meta


def read_architecture(directory: str, step: int) -> Architecture:
  """The architecture record of a step (format 2: its own item; format 1: converted from ``meta``).

  Args:
    directory: the manager directory (from ``resolve``).
    step: the step.

  Returns:
    The ``Architecture``.

  Raises:
    CheckpointError: if the record cannot be read or is invalid (``Architecture.from_json``'s errors).
  """
  arch_dir = os.path.join(directory, str(step), "architecture")
  if os.path.isdir(arch_dir):
    source, record = arch_dir, _read_json(arch_dir)
  else:
    source, record = os.path.join(directory, str(step), "meta"), read_meta(directory, step)
  try:
    return Architecture.from_json(record, where=source)
  except (FormatError, ValueError) as err:
    raise CheckpointError(str(err)) from None


def _normalized_shapes(tree, is_leaf=None) -> dict[str, tuple]:
  return {path: tuple(leaf.shape) for path, leaf in leaves_by_path(tree, is_leaf).items()}


def _check_shapes(item_dir: str, abstract: Any) -> None:
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      stored_tree = ckptr.metadata(item_dir).item_metadata.tree
  except Exception as err:  # noqa: BLE001
    raise CheckpointError(f"cannot read array metadata of {item_dir}: {first_line(err)}") from None
  stored = _normalized_shapes(stored_tree, is_leaf=lambda x: hasattr(x, "shape"))
  expected = _normalized_shapes(abstract)
  for leaf in sorted(set(stored) | set(expected)):
    if leaf not in stored:
      raise CheckpointError(f"{item_dir}: leaf {leaf!r} expected by the model is missing from the checkpoint")
    if leaf not in expected:
      raise CheckpointError(f"{item_dir}: checkpoint leaf {leaf!r} does not exist in the model")
    if stored[leaf] != expected[leaf]:
      raise CheckpointError(f"{item_dir}: leaf {leaf!r} has shape {stored[leaf]} in the checkpoint but "
                            f"{expected[leaf]} in the model built from its architecture record")


def restore_item(directory: str, step: int, item: str, abstract: Any) -> Any:
  """One array item of a step restored into ``abstract`` (shapes checked leaf by leaf first).

  Args:
    directory: the manager directory (from ``resolve``).
    step: the step.
    item: the item's name ('model' or 'train').
    abstract: the target pytree (``jax.ShapeDtypeStruct`` leaves) the arrays are restored into.

  Returns:
    The restored pytree.

  Raises:
    CheckpointError: if a file fails its checksum, a leaf is missing on either side, a stored shape differs from
      the expected one, or the metadata or arrays cannot be read (one line each).
  """
  item_dir = os.path.join(directory, str(step), item)
  integrity.verify_item(os.path.dirname(item_dir), item)
  _check_shapes(item_dir, abstract)
  try:
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(item_dir, abstract)
  except Exception as err:  # noqa: BLE001
    raise CheckpointError(f"cannot restore {item_dir}: {first_line(err)}") from None


@dataclasses.dataclass
class Restored:
  """What ``restore`` returns: the linen ``model`` built from the record, its flax ``variables``
  ({'params': ..., other collections}), the ``architecture`` record, the run ``meta``, and the manager
  ``directory`` and ``step`` it came from."""
  model: Any
  variables: dict
  architecture: Architecture
  meta: dict
  directory: str
  step: int


def restore_train(directory: str, step: int, abstract_opt_state: Any) -> dict:
  """The 'train' item (opt_state, step, typed rng key) for resuming, given the abstract optimizer state.

  Args:
    directory: the manager directory (from ``resolve``).
    step: the step.
    abstract_opt_state: the optimizer state's abstract shapes (e.g. ``jax.eval_shape(tx.init, params)``).

  Returns:
    {'opt_state': ..., 'step': int32 scalar, 'rng': the key as saved: typed, of its implementation (rewrapped from
    its key data), or a raw uint32 key array}.

  Raises:
    CheckpointError: as ``restore_item``.
  """
  rng = read_meta(directory, step).get("rng")  # absent before jaxsvd 0.2: a default-implementation typed key
  impl = None if rng is None else rng["impl"]
  key_data = (jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))) if rng is None
              else jax.ShapeDtypeStruct(tuple(rng["shape"]), np.dtype(rng["dtype"])))
  abstract = {"opt_state": abstract_opt_state, "step": jax.ShapeDtypeStruct((), np.int32), "rng": key_data}
  item = restore_item(directory, step, "train", abstract)
  if rng is None or impl is not None:
    item["rng"] = jax.random.wrap_key_data(item["rng"], impl=impl)
  return item


__all__ = ["manager", "save", "wait", "check", "library_version", "resolve", "steps", "read_meta", "read_architecture",
           "restore_item", "Restored", "restore_train"]
