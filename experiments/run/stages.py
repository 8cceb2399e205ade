"""The official four-stage recipe as configs (Yang et al. 2020's code runs every stage as a separate job):

  pretrain    λs = 0, no pruning                               → ROOT/pretrain
  regularize  init_from=ROOT/pretrain, λs = reg.sparsity        → ROOT/regularize
  prune       init_from=ROOT/regularize, ``final_prune``'s rule → ROOT/prune (no training; ``paper_recipe``)
  finetune    init_from=ROOT/prune, λs = 0, no pruning          → ROOT/finetune

Each training stage starts with a fresh optimizer at epoch 0 and runs ``num_epochs`` (the official: 164 each).
``start_from`` is what ``init_from`` does in ``loop.init_run``.
"""

from __future__ import annotations

import logging
import os

import ml_collections

from experiments.run.plan import resumable_architecture
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import total_rank

log = logging.getLogger("jaxsvd")

STAGES = ("pretrain", "regularize", "prune", "finetune")
SOURCE = {"regularize": "pretrain", "prune": "regularize", "finetune": "prune"}


def start_from(s, workdir: str) -> tuple[Architecture, dict]:
  """(architecture, variables) of another run's latest checkpoint (``workdir/checkpoints``), checked against the
  config like a resume (model, classes, SVD spec, model options); the SVD execution mode follows the config.

  Args:
    s: the run's ``loop.Setup``.
    workdir: the other run's directory.

  Returns:
    Its architecture record (ranks and original ranks as saved) and variables (params and batch statistics).

  Raises:
    jaxsvd.checkpoint.CheckpointError: if ``workdir`` holds no checkpoint.
    ValueError: one line if the config asks for another architecture than the checkpoint's.
  """
  directory, step = checkpoint.resolve(os.path.join(workdir, "checkpoints"))
  saved = checkpoint.read_architecture(directory, step)
  architecture = resumable_architecture(s.c, s.plan, saved, s.inputs.input_shape, where=f"init_from={workdir}",
                                        contract=s.inputs.contract())
  variables = checkpoint.restore_variables(directory, step, s.ctx.build_model(architecture), architecture.input_shape)
  log.info("initialized from %s step %d (total rank %d)", directory, step, total_rank(architecture.ranks))
  return architecture, variables


def stage_config(c: ml_collections.ConfigDict, stage: str, root: str | None = None) -> ml_collections.ConfigDict:
  """The config of one stage of the recipe whose base config is ``c`` (``reg.sparsity`` is stage 2's λs and
  ``final_prune`` is stage 3's rule).

  Args:
    c: the recipe's base config.
    stage: one of ``STAGES``.
    root: the recipe's directory; ``init_from`` becomes ``root/<previous stage>`` (None: left as in ``c``).

  Returns:
    A new config: every stage turns online pruning off; pretrain and finetune set λs = 0; only prune keeps
    ``final_prune`` enabled.

  Raises:
    ValueError: if ``stage`` is unknown.
  """
  if stage not in STAGES:
    raise ValueError(f"stage={stage!r} is not one of {STAGES}")
  c = c.copy_and_resolve_references()
  with c.unlocked():
    c.pruning.enabled = False
    c.finetune_epochs = 0
    c.final_prune.enabled = stage == "prune"
    if stage in ("pretrain", "finetune"):
      c.reg.sparsity = 0.0
    if root is not None:
      c.init_from = os.path.join(root, SOURCE[stage]) if stage in SOURCE else None
  return c
