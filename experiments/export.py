"""Writes a run's checkpoint as a standalone inference artifact (BatchNorm folded, executions measured, jax.export).

  python -m experiments.export --workdir=runs/fmnist [--out=runs/fmnist/deploy] [--step=N] [--batch=128]
  python runs/fmnist/deploy/deploy_runner.py runs/fmnist/deploy images.npy logits.npy   # jax, numpy, flatbuffers
  python -m experiments.export --workdir=runs/fmnist --format=onnx   # or all: model.onnx + onnx_runner.py too
  python runs/fmnist/deploy/onnx_runner.py runs/fmnist/deploy/model.onnx images.npy logits.npy  # onnxruntime + numpy

The checkpoint's architecture record gives the model (``checkpoint.restore``); ``deploy.fold`` folds every
BatchNorm into the layer before it; ``artifact.autotune`` picks the plan (per-layer merged/factored) and the XLA
options on a batch of ``--batch`` random inputs; the artifact's outputs on that batch are checked against the
restored model's eval outputs and the difference is stored in meta.json, with the record's input contract (the
runner takes uint8 images as stored and normalizes them as in training: docs/deployment.md#the-runners-input-contract)
and two MACs figures: ``macs_model`` (the model at its ranks, each SVD layer at min(factored, merged) MACs: what the
training summary reports, ``jaxsvd.linen.flops``) and ``macs_executed`` (what this artifact's plan runs: each layer
in the execution that measured faster, which need not be the one with fewer MACs). Every failure is one ``error:`` line.

``--format=onnx`` writes ``model.onnx`` instead (``--format=all``: both): the same folded model as ONNX opset 17
(``jaxsvd.deploy.onnx``, the optional extra ``.[onnx]``), its plan measured in ONNX Runtime, uint8 images in with
the contract's normalization inside, a dynamic batch dimension, and ``onnx_runner.py`` (onnxruntime + numpy only)
next to it; the same check against the eval outputs is stored in its metadata.
"""

from __future__ import annotations

import importlib
import os
import sys

import jax
import numpy as np
from absl import flags

from experiments.run import cli
from jaxsvd import checkpoint, deploy
from jaxsvd.deploy import artifact
from jaxsvd.linen import flops

FORMATS = ("artifact", "onnx", "all")
ONNX_EXPORT = "jaxsvd.deploy.onnx.export"  # resolved by name: the optional extra '.[onnx]' (onnx, onnxruntime)
FLAGS = flags.FlagValues()  # this tool's own flags (cli.command), not absl's global ones
flags.DEFINE_string("workdir", None, "The run's directory (its checkpoints/ is read) or a checkpoint directory.",
                    flag_values=FLAGS)
flags.DEFINE_string("out", None, "Where to write the artifact (default: WORKDIR/deploy).", flag_values=FLAGS)
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).", flag_values=FLAGS)
flags.DEFINE_integer("batch", 128, "Batch size the executions are tuned for (the artifact takes any batch).",
                     flag_values=FLAGS)
flags.DEFINE_list("rules", list(artifact.CANDIDATES), "Candidate plans: auto, merged, factored, measured.",
                  flag_values=FLAGS)
flags.DEFINE_list("platforms", ["cpu", "cuda"], "Platforms the StableHLO is lowered for.", flag_values=FLAGS)
flags.DEFINE_enum("format", "artifact", list(FORMATS), "What to write: the jax.export artifact, model.onnx, or both.",
                  flag_values=FLAGS)


def export_run(workdir: str, out: str | None = None, step: int | None = None, batch: int = 128,
               rules=artifact.CANDIDATES, platforms=("cpu", "cuda")) -> dict:
  """Restores ``workdir``'s checkpoint, folds, autotunes and writes the artifact; returns what meta.json gained.

  Args:
    workdir: a run directory holding ``checkpoints/``, or a checkpoint directory.
    out: the artifact directory (default ``workdir/deploy``).
    step: the checkpoint step (default: the latest).
    batch: the batch size to tune at.
    rules: the candidate plans (``artifact.candidate_plans``).
    platforms: what the StableHLO is lowered for.

  Returns:
    {'directory', 'step', 'plan_rule', 'max_abs_diff_vs_eval', 'batch', 'macs_model', 'macs_executed', 'input'}.

  Raises:
    CheckpointError: if the checkpoint cannot be restored.
    ValueError: one line for a bad ``batch``, rule or platform.
  """
  if batch < 1:
    raise ValueError(f"--batch must be an int >= 1, got {batch}")
  ckpt = os.path.join(workdir, "checkpoints")
  restored = checkpoint.restore(ckpt if os.path.isdir(ckpt) else workdir, step)
  arch = restored.architecture
  x = np.random.default_rng(0).normal(size=(batch, *arch.input_shape)).astype(np.float32)
  expected = jax.jit(lambda v, x: restored.model.apply(v, x, train=False))(restored.variables, x)
  folded = deploy.fold(restored.model, restored.variables, x, train=False)
  rule, plan, options, _ = artifact.autotune(folded, x, rules)
  out = out or os.path.join(workdir, "deploy")
  macs_model = flops.count(restored.model, arch.input_shape).macs  # as loop.Setup.cost counts it
  artifact.write(folded, plan, out, options, platforms, {
      "architecture": arch.to_json(), "checkpoint_step": restored.step, "plan_rule": rule, "input": arch.input_contract,
      "macs_model": macs_model})
  diff = float(np.max(np.abs(np.asarray(artifact.load(out)(x, normalized=True)) - np.asarray(expected))))
  artifact.write_meta(out, {**artifact.read_meta(out), "max_abs_diff_vs_eval": diff})
  return {"directory": out, "step": restored.step, "plan_rule": rule, "max_abs_diff_vs_eval": diff, "batch": batch,
          "macs_model": macs_model, "macs_executed": folded.macs(plan), "input": arch.input_contract}


def describe(info: dict) -> str:
  """What ``export_run`` wrote, for a person: where, the input the runner takes, both MACs figures, the check.

  Args:
    info: ``export_run``'s result.

  Returns:
    A few lines of text.
  """
  contract = info["input"]
  if contract is None:
    takes = "normalized float32 images (the checkpoint has no input contract: it predates jaxsvd 0.3.1)"
  else:
    shape = ", ".join(map(str, contract["shape"]))
    names = contract.get("class_names") or []
    takes = (f"{contract['dtype']} images (batch, {shape}) as stored, normalized inside by the training mean/std of "
             f"{contract.get('dataset')}" + (f"; classes {', '.join(names[:4])}, ..." if names else ""))
  d = info["directory"]
  return "\n".join([
      f"deploy artifact: {d} (checkpoint step {info['step']}, plan {info['plan_rule']!r})",
      f"  input: {takes}",
      f"  MACs per image: {info['macs_model'] / 1e6:.2f} M in the model (as the training summary counts them); "
      f"{info['macs_executed'] / 1e6:.2f} M executed by this plan (layers that measured faster merged run whole)",
      f"  max |artifact - checkpoint| logits on {info['batch']} random inputs: "
      f"{info['max_abs_diff_vs_eval']:.2e}",
      f"  run it: python {os.path.join(d, 'deploy_runner.py')} {d} images.npy logits.npy  (it needs only: "
      f"{deploy.runner.INSTALL})"])


def onnx_exporter():
  """``jaxsvd.deploy.onnx.export``, or a one-line error naming the extra that installs it.

  Returns:
    The module.

  Raises:
    ValueError: if onnx or onnxruntime is not installed.
  """
  try:
    return importlib.import_module(ONNX_EXPORT)
  except ImportError as err:
    raise ValueError(f"--format=onnx needs onnx and onnxruntime ({err.name} is missing): "
                     "pip install -e '.[onnx]'") from None


def describe_onnx(info: dict) -> str:
  """What ``export_checkpoint`` wrote, for a person: where, the input, both MACs figures, the check, the runner.

  Args:
    info: ``jaxsvd.deploy.onnx.export.export_checkpoint``'s result.

  Returns:
    A few lines of text.
  """
  path, d = info["path"], os.path.dirname(info["path"])
  contract = info["input"]
  takes = "normalized float32 images" if contract is None else \
      f"{contract['dtype']} images (batch, {', '.join(map(str, contract['shape']))}) as stored, normalized inside"
  return "\n".join([
      f"ONNX model: {path} (opset 17, checkpoint step {info['step']}, plan {info['plan_rule']!r} measured in "
      f"ONNX Runtime)",
      f"  input: {takes}; dynamic batch",
      f"  MACs per image: {info['macs_model'] / 1e6:.2f} M in the model; {info['macs_executed'] / 1e6:.2f} M "
      "executed by this plan",
      f"  max |ONNX Runtime - checkpoint| logits on {info['batch']} random images: {info['max_abs_diff_vs_eval']:.2e}",
      f"  run it: python {os.path.join(d, 'onnx_runner.py')} {path} images.npy logits.npy"])


def _export(args: list[str]) -> None:
  if args:
    raise ValueError(f"unexpected arguments: {args}")
  if not FLAGS.workdir:
    raise ValueError("--workdir is required: the run directory to export (e.g. --workdir=runs/fmnist)")
  if FLAGS.format in ("artifact", "all"):
    print(describe(export_run(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.batch, FLAGS.rules, FLAGS.platforms)))
  if FLAGS.format in ("onnx", "all"):
    print(describe_onnx(onnx_exporter().export_checkpoint(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.batch,
                                                          FLAGS.rules)))


main = cli.command(__doc__, FLAGS, _export)

if __name__ == "__main__":
  main(sys.argv)
