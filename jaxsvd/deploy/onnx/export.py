"""A run's checkpoint as ``model.onnx`` + ``onnx_runner.py`` (what ``experiments.export --format=onnx`` writes).

``export_checkpoint(workdir)`` restores the checkpoint, folds its BatchNorms (``jaxsvd.deploy.fold``), measures the
plan in ONNX Runtime on a batch of random images as the graph takes them (``tune.autotune``), writes the model with
its metadata (the contract, both MACs figures, the checkpoint step, the jaxsvd version, the architecture record)
and checks ORT's logits against the restored model's eval logits on that batch (``max_abs_diff_vs_eval``, also in
the metadata).
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

import jax
import numpy as np

from jaxsvd import checkpoint
from jaxsvd.deploy.folding import fold
from jaxsvd.deploy.onnx import runner as onnx_runner
from jaxsvd.deploy.onnx.model import add_metadata, metadata, normalizer, save
from jaxsvd.deploy.onnx.tune import CANDIDATES, THREADS, autotune, runner, session
from jaxsvd.linen import flops

FILES = ("model.onnx", "onnx_runner.py")


def sample_images(batch: int, shape, contract: dict | None, seed: int = 0) -> np.ndarray:
  """Random images as the graph takes them: uint8 pixels under a contract, else normalized float32.

  Args:
    batch: how many.
    shape: one image's shape.
    contract: the input contract as JSON, or None.
    seed: the NumPy seed.

  Returns:
    (batch, *shape) images.
  """
  rng = np.random.default_rng(seed)
  if contract is None:
    return rng.normal(size=(batch, *shape)).astype(np.float32)
  return rng.integers(0, 256, (batch, *shape)).astype(contract["dtype"])


def export_checkpoint(workdir: str, out: str | None = None, step: int | None = None, batch: int = 128,
                      rules: Sequence[str] = CANDIDATES, threads: int = THREADS) -> dict:
  """Restores ``workdir``'s checkpoint, folds, measures the plan in ONNX Runtime and writes ``FILES``.

  Args:
    workdir: a run directory holding ``checkpoints/``, or a checkpoint directory.
    out: the directory to write to (default ``workdir/deploy``).
    step: the checkpoint step (default: the latest).
    batch: the batch size to tune at (the model takes any).
    rules: the candidate plans (``tune.candidate_plans``).
    threads: ONNX Runtime intra-op threads for tuning (0: its default).

  Returns:
    {'path', 'step', 'plan_rule', 'max_abs_diff_vs_eval', 'batch', 'macs_model', 'macs_executed', 'input'}.

  Raises:
    CheckpointError: if the checkpoint cannot be restored.
    ValueError: one line for a bad ``batch`` or rule, or a layer or primitive with no ONNX translation.
  """
  if batch < 1:
    raise ValueError(f"--batch must be an int >= 1, got {batch}")
  ckpt = os.path.join(workdir, "checkpoints")
  restored = checkpoint.restore(ckpt if os.path.isdir(ckpt) else workdir, step)
  arch, contract = restored.architecture, restored.architecture.input_contract
  images = sample_images(batch, arch.input_shape, contract)
  x = np.asarray(jax.jit(normalizer(contract))(images))
  expected = np.asarray(jax.jit(lambda v, x: restored.model.apply(v, x, train=False))(restored.variables, x))
  folded = fold(restored.model, restored.variables, x, train=False)
  rule, plan, model = autotune(folded, contract, images, rules, threads=threads)
  diff = float(np.max(np.abs(runner(session(model, threads))(images) - expected)))
  macs_model = flops.count(restored.model, arch.input_shape).macs
  extra = {"architecture": arch.to_json(), "checkpoint_step": restored.step, "plan_rule": rule,
           "macs_model": macs_model, "max_abs_diff_vs_eval": diff, "tuned_batch": batch}
  add_metadata(model, extra)
  out = out or os.path.join(workdir, "deploy")
  path = save(model, out)
  shutil.copyfile(onnx_runner.__file__, os.path.join(out, "onnx_runner.py"))
  meta = metadata(model)
  return {"path": path, "step": restored.step, "plan_rule": rule, "max_abs_diff_vs_eval": diff, "batch": batch,
          "macs_model": macs_model, "macs_executed": meta["macs_executed"], "input": contract}


__all__ = ["FILES", "sample_images", "export_checkpoint"]
