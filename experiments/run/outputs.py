"""The end of a run: ``summary.json``, the final params for other runtimes (SVD models) and the figures.

The figures module imports matplotlib, so it is resolved by name (``FIGURES``) only when a run plots.
"""

from __future__ import annotations

import importlib
import json
import logging
import os

import jax

from experiments.report.metrics import summary_table
from experiments.run import events, startup
from experiments.run.plan import initial_architecture
from jaxsvd.core.structure import total_rank
from jaxsvd.deploy import params as deploy_params
from jaxsvd.training import distributed

log = logging.getLogger("jaxsvd")
FIGURES = "experiments.report.figures"  # plot_all(workdir, history, params, events, summary, architecture)


def finish(s, r, workdir: str) -> dict:
  """The end of a run: writes ``summary.json``, the exports (SVD models only) and, if ``s.c.plots``, the plots.

  Args:
    s: the run's ``loop.Setup``.
    r: the finished ``loop.Run``.
    workdir: the run's directory.

  Returns:
    The summary: the task's fields (``Task.summary``); params and MACs as the run began and at its end; FLOPs
    speedup; epochs; with SVD layers, the SVD-layer params and total rank at the original and the final ranks; the
    event types' fields (slimming's channels, the nonzero params of masks); ``plots`` (PNG paths, not in
    ``summary.json``) if plotted.
  """
  state = s.par.host_state(r.state)
  arch = r.architecture
  before = s.cost(initial_architecture(s.c, s.plan, arch.input_shape, arch.original_ranks))  # as the run began
  after = s.cost(arch)
  units = s.plan.task.units_per_example(tuple(arch.input_shape))  # MACs per example, or per token
  summary = {**s.plan.task.summary(r.history), "params_before": before.params, "params_after": after.params,
             "macs_before": before.macs // units, "macs_after": after.macs // units,
             "flops_speedup": before.macs / max(after.macs, 1),
             "epochs": r.epoch}
  if s.plan.task.unit != "example":
    summary["macs_per"] = s.plan.task.unit
  if arch.svd is not None:  # a run shows what its method has: ranks only with SVD layers
    summary.update(svd_params_before=before.svd_params(), svd_params_after=after.svd_params(),
                   rank_before=total_rank(arch.original_ranks), rank_after=total_rank(arch.ranks))
  summary.update(events.summary(arch, state.params))
  if arch.svd is not None:
    # every process: the save is collective
    deploy_params.save_params(os.path.join(workdir, "final_params"), arch, state.params, state.model_state,
                              s.plan.task.model(arch.dense(), None))
  if not distributed.is_primary():
    return summary
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  log.info("summary\n%s", summary_table(summary, s.plan.task.summary_rows(summary)))
  if s.c.plots:
    figures = importlib.import_module(FIGURES)
    summary["plots"] = figures.plot_all(workdir, r.history, jax.device_get(state.params), r.events, summary, arch)
  log.info("%s", startup.next_steps(workdir, s.plan.task))
  return summary
