"""One prune of another run's checkpoint, no training: the official recipe's stage 3 and ``experiments.compress
--config.method=energy``. The run's ``init_from`` checkpoint is pruned once by ``final_prune``'s rule (e.g. energy
e: each layer keeps all but the fraction e of its Σ s²), evaluated, and saved as an ordinary run at step 0 with a fresh
optimizer, from which a fine-tune run can start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

from experiments.run import epoch as epoch_lib
from experiments.run import loop, outputs
from jaxsvd import checkpoint
from jaxsvd.core.structure import total_rank
from jaxsvd.pruning import Floors, Strategy, rank
from jaxsvd.training import distributed
from jaxsvd.training.train_state import TrainState

log = logging.getLogger("jaxsvd")


def prune_stage(c, workdir: str) -> dict:
  """Stage 3: the ``c.init_from`` checkpoint pruned once by ``c.final_prune``'s rule, evaluated and saved (step 0,
  fresh optimizer) to ``workdir``; no training.

  Args:
    c: the prune stage's config (``init_from`` set).
    workdir: receives checkpoints/, summary.json and export/.

  Returns:
    The summary (``outputs.finish``) plus ``<the task's best metric>_before_prune`` and the per-layer ``ranks``.

  Raises:
    ValueError: if ``c.init_from`` is not set, or a config field is invalid.
  """
  if not c.init_from:
    raise ValueError("init_from must name the regularized run's workdir for the prune stage")
  shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)  # an interrupted prune is redone
  s = loop.setup(c, workdir)
  metric = s.plan.task.best_metric
  try:
    r = loop.init_run(s)
    before = epoch_lib.evaluate(s.par, r.state, s.inputs, s.plan.task)
    state = s.par.host_state(r.state)
    params, ranks, report = rank.prune(state.params, Strategy.from_config(c.final_prune, "final_prune"),
                                       Floors.from_config(c.final_prune, "final_prune"), r.architecture.original_ranks)
    r.architecture = r.architecture.replace(ranks=ranks)
    model = s.ctx.build_model(r.architecture)
    state = TrainState.create(model.apply, {"params": params, **state.model_state},
                              s.ctx.make_tx(r.architecture, params))
    r.state = s.par.place(state)
    cost = s.cost(r.architecture)
    row = {"epoch": 0, **epoch_lib.evaluate(s.par, r.state, s.inputs, s.plan.task),
           "total_rank": total_rank(ranks), "params": cost.params,
           "macs": cost.macs // s.plan.task.units_per_example(tuple(r.architecture.input_shape))}
    r.history, r.events = [row], [{"epoch": 0, "kind": "prune", "total_rank": total_rank(ranks), "ranks": ranks}]
    log.info("prune stage: %s; %s %.4f -> %.4f", report.summary(), metric.replace("_", " "), before[metric],
             row[metric])
    checkpoint.save(s.mngr, state, r.rng, r.architecture, loop.run_info(c, r), {metric: row[metric]})
    s.mngr.wait_until_finished()
    summary = outputs.finish(s, r, workdir)
  finally:
    s.mngr.close()
  extra = {f"{metric}_before_prune": before[metric], "ranks": dict(ranks)}
  if distributed.is_primary():  # outputs.finish wrote summary.json on process 0 only
    with open(os.path.join(workdir, "summary.json")) as f:
      saved = json.load(f)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({**saved, **extra}, f, indent=2)
  return {**summary, **extra}


__all__ = ["prune_stage"]
