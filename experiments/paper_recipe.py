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

import jax
import numpy as np
from absl import app
from jax.experimental import multihost_utils

from experiments.configs import paper
from experiments.run import cli, loop
from experiments.run.prune_stage import prune_stage
from jaxsvd.training import distributed

log = logging.getLogger("jaxsvd")


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
