"""A run that starts from another run's checkpoint (the config's ``init_from``): how the stages of the official
recipe chain (``experiments.configs.paper.stage_config`` writes the stages' configs). ``start_from`` is what
``init_from`` does in ``loop.init_run``: architecture and variables from the other run, a fresh optimizer, epoch 0.
"""

from __future__ import annotations

import logging
import os

from experiments.run.plan import resumable_architecture
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import total_rank

log = logging.getLogger("jaxsvd")


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
  rank = f" (total rank {total_rank(architecture.ranks)})" if architecture.svd is not None else ""
  log.info("initialized from %s step %d%s", directory, step, rank)
  return architecture, variables


__all__ = ["start_from"]
