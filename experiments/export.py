"""Writes a run's checkpoint as a standalone inference artifact (BatchNorm folded, executions measured, jax.export).

  python -m experiments.export --workdir=runs/fmnist [--out=runs/fmnist/deploy] [--step=N] [--batch=128]
  python runs/fmnist/deploy/deploy_runner.py runs/fmnist/deploy images.npy logits.npy   # jax + numpy only

The checkpoint's architecture record gives the model (``checkpoint.restore``); ``deploy.fold`` folds every
BatchNorm into the layer before it; ``artifact.autotune`` picks the plan (per-layer merged/factored) and the XLA
options on a batch of ``--batch`` random inputs; the artifact's outputs on that batch are checked against the
restored model's eval outputs and the difference is stored in meta.json. What the artifact's runner takes (shape,
dtype, the training normalization): docs/deployment.md#the-runners-input-contract.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import app, flags, logging

from jaxsvd import checkpoint, deploy
from jaxsvd.deploy import artifact

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's directory (its checkpoints/ is read) or a checkpoint directory.")
flags.DEFINE_string("out", None, "Where to write the artifact (default: WORKDIR/deploy).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.DEFINE_integer("batch", 128, "Batch size the executions are tuned for (the artifact takes any batch).")
flags.DEFINE_list("rules", list(artifact.CANDIDATES), "Candidate plans: auto, merged, factored, measured.")
flags.DEFINE_list("platforms", ["cpu", "cuda"], "Platforms the StableHLO is lowered for.")


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
    {'directory', 'step', 'plan_rule', 'max_abs_diff_vs_eval', 'macs_per_example'}.

  Raises:
    CheckpointError: if the checkpoint cannot be restored.
  """
  ckpt = os.path.join(workdir, "checkpoints")
  restored = checkpoint.restore(ckpt if os.path.isdir(ckpt) else workdir, step)
  arch = restored.architecture
  x = np.random.default_rng(0).normal(size=(batch, *arch.input_shape)).astype(np.float32)
  expected = jax.jit(lambda v, x: restored.model.apply(v, x, train=False))(restored.variables, x)
  folded = deploy.fold(restored.model, restored.variables, x, train=False)
  rule, plan, options, _ = artifact.autotune(folded, x, rules)
  out = out or os.path.join(workdir, "deploy")
  artifact.write(folded, plan, out, options, platforms, {"architecture": arch.to_json(), "checkpoint_step":
                                                         restored.step, "plan_rule": rule})
  diff = float(np.max(np.abs(np.asarray(artifact.load(out)(x)) - np.asarray(expected))))
  info = {"directory": out, "step": restored.step, "plan_rule": rule, "max_abs_diff_vs_eval": diff,
          "macs_per_example": folded.macs(plan)}
  artifact.write_meta(out, {**artifact.read_meta(out), "max_abs_diff_vs_eval": diff})
  return info


def main(argv):
  del argv
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  info = export_run(FLAGS.workdir, FLAGS.out, FLAGS.step, FLAGS.batch, FLAGS.rules, FLAGS.platforms)
  logging.info("deploy artifact: %s", info)
  print(info)


if __name__ == "__main__":
  app.run(main)
