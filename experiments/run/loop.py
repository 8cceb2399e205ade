"""The experiment loop: train → pruning events → fine-tune → evaluate → export, with Orbax checkpoints and
exact resume from ``workdir``.

    for epoch in ...:
      state = train_epoch(...)                         # jitted, donated state
      for event in plan.events:                        # experiments/run/events.py
        if event.due(epoch): state, architecture = event.apply(state, architecture, ctx)
      checkpoint.save(state, architecture, run info)   # the record is what restore and resume rebuild from

Nothing here knows a pruning method or a task: methods are registered ``events.Event`` types
(``experiments/run/methods/``), and the data, the model record, the steps and the metrics come from the plan's task
(``experiments.tasks.Task``). ``run(config, workdir)`` is the entry point (``experiments/cifar_svd.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp

from experiments import tasks
from experiments.report.metrics import MetricsWriter, epoch_line
from experiments.run import epoch as epoch_lib
from experiments.run import events as events_lib
from experiments.run import outputs, preemption, preflight, recovery, stages, startup
from experiments.run.plan import Plan, initial_architecture, make_plan, resumable_architecture
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.core.structure import total_rank
from jaxsvd.linen import budget as linen_budget
from jaxsvd.linen import flops
from jaxsvd.pruning.budget import MacsCounter
from jaxsvd.training import distributed, optim
from jaxsvd.training.parallel import DataParallel
from jaxsvd.training.train_state import TrainState

log = logging.getLogger("jaxsvd")


@dataclasses.dataclass
class Run:
  """Everything the loop carries between epochs (host side)."""
  state: Any  # TrainState placed for the parallel mode
  rng: jax.Array
  epoch: int
  architecture: Architecture
  history: list
  events: list  # JSON entries of the events that fired
  progress: epoch_lib.Progress | None = None  # how far epoch ``epoch + 1`` got (a resume from a mid-epoch checkpoint)


@dataclasses.dataclass
class Setup:
  """What stays fixed during a run."""
  c: Any
  plan: Plan
  par: DataParallel
  inputs: tasks.Inputs  # the task's data
  ctx: events_lib.Context
  mngr: ocp.CheckpointManager
  costs: dict = dataclasses.field(default_factory=dict)
  lock: contextlib.ExitStack = dataclasses.field(default_factory=contextlib.ExitStack)  # the workdir lock
  stop: preemption.StopRequest = dataclasses.field(default_factory=preemption.StopRequest)

  def cost(self, architecture: Architecture) -> flops.CostReport:
    """``flops.CostReport`` (params, MACs) of ``architecture``'s model, cached under the record's JSON."""
    key = json.dumps(architecture.to_json(), sort_keys=True)
    if key not in self.costs:
      self.costs[key] = flops.count(self.plan.task.model(architecture, None), architecture.input_shape)
    return self.costs[key]


def make_tx(c, steps_per_epoch: int, architecture: Architecture, params) -> optax.GradientTransformation:
  """The run's optimizer for ``architecture``: the config's, as every event type shapes it from the record.

  Args:
    c: the experiment config (``optimizer`` and ``num_epochs`` are read).
    steps_per_epoch: optimizer steps per epoch, for the learning-rate schedule.
    architecture: the architecture record the optimizer is for (e.g. after slimming: no γ-L1).
    params: that architecture's params.

  Returns:
    ``optim.make_optimizer`` of the resulting config, chained with the event types' extra transforms.
  """
  cfg, extra = events_lib.optimizer(architecture, params, c.optimizer.to_dict())
  base = optim.make_optimizer(cfg, params, steps_per_epoch, c.num_epochs)
  return optax.chain(base, *extra) if extra else base


def init_run(s: Setup) -> Run:
  """A fresh ``Run`` at epoch 0 (placed state): the model initialized from ``s.c.seed`` (ranks read from its params),
  or, with ``s.c.init_from``, that run's latest checkpoint (``stages.start_from``); a fresh optimizer either way."""
  rng, init_rng = jax.random.split(jax.random.key(s.c.seed))
  if s.c.init_from:
    architecture, variables = stages.start_from(s, s.c.init_from)
  else:
    architecture = events_lib.initial(s.c, initial_architecture(s.c, s.plan, s.inputs.input_shape, {},
                                                                s.inputs.contract()))
    model = s.ctx.build_model(architecture)
    variables = jax.jit(model.init)(init_rng, jnp.zeros((1, *s.inputs.input_shape), jnp.float32))
    ranks = read_ranks(variables["params"])
    architecture = architecture.replace(ranks=ranks, original_ranks=dict(ranks))
  model = s.ctx.build_model(architecture)
  apply_fn = events_lib.forward(s.c, architecture, model, variables["params"])
  state = TrainState.create(apply_fn, variables, s.ctx.make_tx(architecture, variables["params"]))
  return Run(s.par.place(state), rng, 0, architecture, [], [])


def resume_run(s: Setup, step: int) -> Run:
  """The run saved in checkpoint ``step``: architecture, params, model and optimizer state, rng, epoch, history.

  Args:
    s: the run's setup (its checkpoint manager's directory is read).
    step: the checkpoint step to restore.

  Returns:
    The ``Run``, its state placed for the parallel mode.
  """
  directory = s.mngr.directory
  meta = checkpoint.read_meta(directory, step)
  architecture = resumable_architecture(s.c, s.plan, checkpoint.read_architecture(directory, step),
                                        s.inputs.input_shape, contract=s.inputs.contract())
  model = s.ctx.build_model(architecture)
  variables = checkpoint.restore_variables(directory, step, model, architecture.input_shape)
  params = variables.pop("params")
  tx = s.ctx.make_tx(architecture, params)
  train = checkpoint.restore_train(directory, step, jax.eval_shape(tx.init, params))
  state = TrainState(step=train["step"], params=params, model_state=variables, opt_state=train["opt_state"],
                     apply_fn=events_lib.forward(s.c, architecture, model, params), tx=tx)
  if s.inputs.local:  # a stream continues where it stopped (mid-epoch exact; any process count)
    s.inputs.set_state(meta.get("data_stream"))
  progress = meta.get("epoch_progress")
  if progress is not None:
    progress = epoch_lib.Progress.from_json(progress, int(train["step"]))
  where = f"epoch {meta['epoch']}" if progress is None else f"epoch {progress.epoch}, batch {progress.batches}"
  rank = f", total rank {total_rank(architecture.ranks)}" if architecture.svd is not None else ""
  log.info("resumed from %s step %d (%s%s)", directory, step, where, rank)
  return Run(s.par.place(state), train["rng"], meta["epoch"], architecture, meta["history"],
             meta.get("pruning_events", []), progress)


def apply_events(s: Setup, r: Run) -> list[str]:
  """Fires every event due after ``r.epoch``; returns their log lines (logged after the epoch's line).

  Args:
    s: the run's setup (its plan's events).
    r: the run; its state, architecture and events are updated in place.

  Returns:
    One '<event> after epoch N: ...' line per event that fired.
  """
  lines = []
  for event in s.plan.events:
    if not event.due(r.epoch):
      continue
    outcome = event.apply(s.par.host_state(r.state), r.architecture, dataclasses.replace(s.ctx, epoch=r.epoch))
    r.state, r.architecture = s.par.place(outcome.state), outcome.architecture
    r.events.append({"epoch": r.epoch, **outcome.entry})
    lines.append(f"{event.name} after epoch {r.epoch}: {outcome.message}")
  return lines


def run_epoch(s: Setup, r: Run) -> tuple[dict, list[str], bool]:
  """Trains (from ``r.progress`` when resuming inside it), evaluates and fires the events of epoch ``r.epoch``;
  returns (metrics row, the events' log lines, architecture changed).

  Args:
    s: the run's setup.
    r: the run, at the epoch to run; its state, architecture, events and progress are updated in place.

  Returns:
    (row, lines, changed): the epoch's metrics, times, params and MACs, the total rank (a model with SVD layers)
    and the configured events' columns (``events.row``: slimming's channels, masks' nonzero params); the fired
    events' log lines; whether the architecture changed.

  Raises:
    FloatingPointError: if a step's loss or updated state is not finite (this epoch is not saved; one line naming
      the last good checkpoint).
    preemption.Stopped: after a stop request inside the epoch, once that step's checkpoint is committed.
  """
  c = s.c
  if r.progress is None:
    r.progress = epoch_lib.Progress(r.epoch, first_step=int(s.par.metrics({"step": r.state.step})["step"]))
  batches = epoch_lib.epoch_batches(s.inputs, r.rng, r.epoch, r.progress.batches)
  try:
    r.state, row = epoch_lib.train_epoch(c, s.par, r.state, batches, s.plan.reg_for(r.epoch), r.progress,
                                         s.inputs.num_train_batches(), s.inputs.local,
                                         functools.partial(after_step, s, r), s.plan.task.progress_metrics,
                                         s.plan.task.examples)
  except recovery.NonFiniteError as err:
    raise recovery.nonfinite(s.mngr, err, r.epoch) from None
  r.progress = None
  row = {"epoch": r.epoch, **row}
  start = time.perf_counter()
  row.update(epoch_lib.evaluate(s.par, r.state, s.inputs, s.plan.task), time_eval=time.perf_counter() - start)
  start = time.perf_counter()
  before = r.architecture
  lines = apply_events(s, r)
  row["time_prune"] = time.perf_counter() - start
  cost = s.cost(r.architecture)
  if r.architecture.svd is not None:
    row["total_rank"] = total_rank(r.architecture.ranks)
  macs = cost.macs // s.plan.task.units_per_example(tuple(r.architecture.input_shape))
  row.update(params=cost.params, macs=macs, **events_lib.row(s.plan.events, r.architecture, r.state.params),
             finetune=int(s.plan.phases.in_finetune(r.epoch)))
  return row, lines, r.architecture != before


def after_step(s: Setup, r: Run, state, progress: epoch_lib.Progress, last_batch: bool) -> None:
  """After each step inside an epoch: a mid-epoch checkpoint every ``checkpoint.every_steps`` steps, and on a stop
  request a checkpoint of this step and ``preemption.Stopped`` (the epoch's last step leaves both to the epoch end).

  Args:
    s: the run's setup.
    r: the run (its rng, architecture and history go into the checkpoint).
    state: the train state after the step, placed for the parallel mode.
    progress: the epoch so far.
    last_batch: whether the step was the epoch's last.

  Raises:
    preemption.Stopped: after the stop checkpoint is committed.
    recovery.NonFiniteError: if a step since the last check was non-finite (nothing is saved).
  """
  checkpoint.check(s.mngr)  # a failed async save stops the run at the next step, naming that save's step
  step = progress.first_step + len(progress.finite)
  stop = s.stop.requested(step) and not last_batch
  every = s.c.checkpoint.every_steps
  if last_batch or not (stop or (every and step % every == 0)):
    return
  progress.check_finite(s.par)
  info = {**run_info(s.c, r), "epoch": r.epoch - 1, "epoch_progress": progress.to_json(s.par),
          "data_stream": s.inputs.get_state()}
  checkpoint.save(s.mngr, s.par.host_state(state), r.rng, r.architecture, info)
  if stop:
    raise stopped(s, step, f"epoch {r.epoch}, batch {progress.batches} of {s.inputs.num_train_batches()}")


def stopped(s: Setup, step: int, where: str) -> preemption.Stopped:
  """Waits for the stop checkpoint to commit; the ``Stopped`` error (logged as one line) naming it."""
  checkpoint.wait(s.mngr)
  message = (f"stopped by {s.stop.received} after step {step} ({where}); checkpoint saved in {s.mngr.directory}: "
             f"run the same command again to resume (exit code {preemption.EXIT_CODE})")
  log.warning("%s", message)
  return preemption.Stopped(message, step)


def run_info(c, r: Run) -> dict:
  """The checkpoint's run metadata (beside the architecture record).

  Args:
    c: the experiment config (stored as JSON).
    r: the run.

  Returns:
    {'epoch', 'history', 'pruning_events', 'best_<the task's best metric>' (None without history), 'config'}.
  """
  task = tasks.of(c)
  metric = task.best_metric
  best = task.best(h[metric] for h in r.history)
  return {"epoch": r.epoch, "history": r.history, "pruning_events": r.events, f"best_{metric}": best,
          "config": json.loads(c.to_json_best_effort())}


def macs_counter(task: tasks.Task, architecture: Architecture, paths) -> MacsCounter:
  """The budget search's MACs counter of ``architecture``'s model as ``task`` builds it (``linen.budget``).

  Args:
    task: the run's task (its ``model``).
    architecture: the record of an SVD model.
    paths: its SVD layers' paths.

  Returns:
    The ``MacsCounter``: MACs = Σ_other layers + Σ_SVD min(dense_l, r_l · MACs_l(r = 1)).
  """
  rank_one = architecture.replace(ranks={p: 1 for p in paths})
  return linen_budget.macs_counter(task.model(architecture.dense(), None), task.model(rank_one, None), paths,
                                   tuple(architecture.input_shape))


def setup(c, workdir: str, stop: preemption.StopRequest | None = None, plan: Plan | None = None) -> Setup:
  """Validates config ``c`` and builds what stays fixed: plan, data, parallel mode, event context, checkpoints.

  Args:
    c: the experiment config.
    workdir: the run's directory (created if missing); checkpoints go to ``workdir/checkpoints``.
    stop: the run's stop request (None: a new one from ``c.checkpoint``, not installed).
    plan: ``make_plan(c)`` when the caller already made it (None: made here).

  Returns:
    The ``Setup``.

  Raises:
    ValueError: one line naming a bad config field, bad data, or a workdir that cannot be written.
    FileNotFoundError: if the task's data files are missing.
  """
  plan = make_plan(c) if plan is None else plan
  preflight.check_workdir(workdir)
  inputs = plan.task.inputs(c)
  par = plan.task.parallel(c)
  preflight.check_devices(c, par.num_devices)
  steps_per_epoch = max(inputs.num_train_batches(), 1)
  ctx = events_lib.Context(build_model=lambda a: plan.task.model(a, par.bn_axis_name),
                           make_tx=lambda a, params: make_tx(c, steps_per_epoch, a, params), workdir=workdir,
                           macs=functools.partial(macs_counter, plan.task))
  mngr, lock = recovery.open_checkpoints(workdir, c.checkpoint, plan.task.best_metric,
                                         "max" if plan.task.higher_is_better else "min")
  stop = stop or preemption.StopRequest(c.checkpoint.stop_signal, c.checkpoint.stop_sync_every)
  return Setup(c, plan, par, inputs, ctx, mngr, lock=lock, stop=stop)


def run(c, workdir: str, stop_after_epoch: int | None = None) -> dict | None:
  """Trains (or resumes) the experiment described by config ``c`` in ``workdir``.

  Args:
    c: the experiment config (validated first: one-line ``ValueError`` naming a bad field).
    workdir: receives checkpoints/, metrics.csv, summary.json, plots and final_params/; resumed from if it has them.
    stop_after_epoch: end this process early (after that epoch's checkpoint), as a preemption would.

  Returns:
    The end-of-run summary (a finished run's, unchanged, when it is re-run: ``startup.finished``), or None when
    stopped early.

  Raises:
    ValueError: one line naming a bad config field; ``checkpoint.CheckpointError`` for a damaged checkpoint or a
      failed save; ``workdir.WorkdirLockedError`` if another process runs in ``workdir``.
    FloatingPointError: if a step's loss or updated state becomes non-finite.
  """
  plan = make_plan(c)  # a bad field is one line, finished run or not
  summary = startup.finished(c, workdir)
  if summary is not None:
    return summary
  stop = preemption.StopRequest(c.checkpoint.stop_signal, c.checkpoint.stop_sync_every)
  s = writer = None
  try:
    with stop:  # from here a signal stops the run after its next step (one during setup or restore included)
      s = setup(c, workdir, stop, plan)
      startup.announce(s, workdir)
      r = recovery.start(s, init_run, resume_run)
      writer = MetricsWriter(workdir, c.tensorboard, r.history) if distributed.is_primary() else None
      finished = train_epochs(s, r, writer, stop_after_epoch)
    if not finished:
      return None
    checkpoint.wait(s.mngr)
    return outputs.finish(s, r, workdir)
  finally:
    if s is not None:
      recovery.close(s.mngr, s.lock, writer)


def train_epochs(s: Setup, r: Run, writer, stop_after_epoch: int | None = None) -> bool:
  """The epochs from ``r.epoch + 1`` to the config's last, each one's row written and checkpoint saved; returns
  whether the run reached its last epoch (False: ``stop_after_epoch``).

  Raises:
    preemption.Stopped: after a stop request, once the checkpoint of the step it stopped after is committed.
  """
  compiles_before = None
  while r.epoch < s.c.num_epochs:
    r.epoch += 1
    row, lines, changed = run_epoch(s, r)
    if compiles_before is not None:
      log.info("recompiled for the new architecture: %d new compile(s) of train_step",
               s.par.train_step.traces - compiles_before)
    compiles_before = s.par.train_step.traces if changed else None
    r.history.append(row)
    if writer:
      try:
        writer.write(row)
      except checkpoint.CheckpointSaveError as err:
        raise checkpoint.CheckpointSaveError(f"{err}; {recovery.last_good(s.mngr)}") from None
    log.info(epoch_line(row, s.plan.task.epoch_text(row), s.plan.task.examples))
    for line in lines:  # the epoch's events, after its line (the recompile note follows in the next epoch)
      log.info("%s", line)
    host = s.par.host_state(r.state)
    checkpoint.save(s.mngr, host, r.rng, r.architecture, {**run_info(s.c, r), "data_stream": s.inputs.get_state()},
                    metrics={s.plan.task.best_metric: row[s.plan.task.best_metric]})
    step = int(host.step)
    if r.epoch < s.c.num_epochs and s.stop.requested(step, sync=True):
      raise stopped(s, step, f"the end of epoch {r.epoch}")
    if stop_after_epoch is not None and stop_after_epoch <= r.epoch < s.c.num_epochs:
      return False
  return True
