"""The authors' four-stage recipe in one command: pretrain (λs = 0) → regularize (from it) → prune → fine-tune.

  python -m experiments.paper_recipe --config=paper:resnet20,channel,hoyer --workdir=ROOT
  python -m experiments.paper_recipe --config=fashion_mnist_recipe --workdir=ROOT
Flags as for ``experiments.cifar_svd``: --config=NAME|FILE.py[:ARGS] (--list_configs), --config.<field>=VALUE,
--workdir=DIR (default runs/recipe).

Stages go to ROOT/{pretrain,regularize,prune,finetune} (``experiments.configs.paper.stage_config``); a stage with a
``summary.json`` is done and skipped, an interrupted training stage resumes from its checkpoints, an interrupted
prune stage is redone. ROOT/recipe.json collects accuracy, total rank and MACs after each stage.
The recipe, every setting and the measured Fashion-MNIST stages: docs/paper.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import jax
import numpy as np
from absl import app
from jax.experimental import multihost_utils

from experiments.configs import paper
from experiments.run import cli, loop, outputs
from experiments.run import epoch as epoch_lib
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
    The summary (``outputs.finish``) plus ``test_accuracy_before_prune`` and the per-layer ``ranks``.

  Raises:
    ValueError: if ``c.init_from`` is not set, or a config field is invalid.
  """
  if not c.init_from:
    raise ValueError("init_from must name the regularized run's workdir for the prune stage")
  shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)  # an interrupted prune is redone
  s = loop.setup(c, workdir)
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
           "total_rank": total_rank(ranks), "params": cost.params, "macs": cost.macs}
    r.history, r.events = [row], [{"epoch": 0, "kind": "prune", "total_rank": total_rank(ranks), "ranks": ranks}]
    log.info("prune stage: %s; test accuracy %.4f -> %.4f", report.summary(), before["test_accuracy"],
             row["test_accuracy"])
    checkpoint.save(s.mngr, state, r.rng, r.architecture, loop.run_info(c, r), {"test_accuracy": row["test_accuracy"]})
    s.mngr.wait_until_finished()
    summary = outputs.finish(s, r, workdir)
  finally:
    s.mngr.close()
  extra = {"test_accuracy_before_prune": before["test_accuracy"], "ranks": dict(ranks)}
  if distributed.is_primary():  # outputs.finish wrote summary.json on process 0 only
    with open(os.path.join(workdir, "summary.json")) as f:
      saved = json.load(f)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({**saved, **extra}, f, indent=2)
  return {**summary, **extra}


def stage_done(path: str, key: str = "test_accuracy") -> bool:
  """Whether a stage's ``summary.json`` exists and holds ``key`` (the prune stage adds 'ranks' last), as process 0
  sees it: every process then takes the same branch."""
  done = False
  if os.path.exists(path):
    with open(path) as f:
      done = key in json.load(f)
  if jax.process_count() > 1:
    done = bool(multihost_utils.broadcast_one_to_all(np.int32(done)))
  return done


def run_recipe(c, root: str) -> dict:
  """Runs (or resumes) the four stages of base config ``c`` into ``root``; returns {stage: summary}.

  Args:
    c: the recipe's base config (``paper.stage_config`` derives each stage's).
    root: the recipe's directory.

  Returns:
    {stage: its summary.json}; also written, with the columns of docs/paper.md's table, to ``root/recipe.json``.
  """
  results = {}
  for stage in paper.STAGES:
    workdir = os.path.join(root, stage)
    path = os.path.join(workdir, "summary.json")
    if stage_done(path, "ranks" if stage == "prune" else "test_accuracy"):
      with open(path) as f:
        results[stage] = json.load(f)
      continue
    log.info("recipe stage %s -> %s", stage, workdir)
    sc = paper.stage_config(c, stage, root)
    summary = prune_stage(sc, workdir) if stage == "prune" else loop.run(sc, workdir)
    if summary is None:  # stopped early (a stop_after_epoch or signal): resumed by the next invocation
      return results
    results[stage] = {k: v for k, v in summary.items() if k != "plots"}  # what summary.json holds
  table = {stage: {k: v for k, v in summary.items() if k in ("test_accuracy", "rank_after", "macs_after", "macs_before",
                                                             "flops_speedup", "epochs")}
           for stage, summary in results.items()}
  if distributed.is_primary():
    with open(os.path.join(root, "recipe.json"), "w") as f:
      json.dump(table, f, indent=2)
  log.info("recipe done: %s", json.dumps(table))
  return results


main = cli.main_for(run_recipe, "fashion_mnist_recipe", "runs/recipe")

if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
