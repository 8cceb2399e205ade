"""The experiment loop: train → online pruning events → final energy prune → fine-tune (λs = 0)
→ evaluate → export, with Orbax checkpoints and exact resume from ``workdir``.

``run(config, workdir)`` is the entry point (see ``experiments/cifar_svd.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from experiments import reporting
from jaxsvd import checkpoint, data, export, flops, optim, pruning, slimming
from jaxsvd import masks as masks_lib
from jaxsvd.losses import RegularizerConfig
from jaxsvd.models import MODEL_NAMES, SVDSpec, build_model
from jaxsvd.parallel import KINDS, DataParallel
from jaxsvd.ranks import ranks as read_ranks
from jaxsvd.ranks import total_rank
from jaxsvd.train_state import TrainState
from jaxsvd.validate import check_choice, check_in_range, check_min_int

log = logging.getLogger("jaxsvd")


@dataclasses.dataclass(frozen=True)
class Plan:
  """Validated, typed view of an experiment config (built before anything is compiled)."""
  svd: SVDSpec | None
  reg: RegularizerConfig
  online: pruning.PruneConfig | None
  final: pruning.PruneConfig | None
  schedule: pruning.PruneConfig  # the pruning/fine-tune schedule, also when online pruning is off
  slim_epoch: int | None = None  # network slimming: prune BN channels after this epoch (None: off)


def make_plan(c) -> Plan:
  check_choice("model", c.model, MODEL_NAMES)
  check_choice("dataset", c.dataset, data.DATASETS)
  check_choice("data_source", c.data_source, data.SOURCES)
  check_choice("parallel", c.parallel, KINDS)
  for field in ("num_epochs", "batch_size", "eval_batch_size"):
    check_min_int(field, c[field], 1)
  if c.max_steps_per_epoch is not None:
    check_min_int("max_steps_per_epoch", c.max_steps_per_epoch, 1)
  optim.validate(c.optimizer)
  reg = RegularizerConfig.from_config(c.reg)
  svd = None
  if c.svd.enabled:
    svd = SVDSpec(c.svd.decomposition, c.svd.mode, (), c.svd.default_rank, c.svd.dense_first, c.svd.dense_last)
  online_cfg = pruning.PruneConfig.from_config(c.pruning)
  if online_cfg.finetune_epochs >= c.num_epochs:
    raise ValueError(f"pruning.finetune_epochs={online_cfg.finetune_epochs} leaves no training epochs "
                     f"(num_epochs={c.num_epochs})")
  if c.pruning.enabled and online_cfg.prune_start > pruning.last_prune_epoch(online_cfg, c.num_epochs):
    raise ValueError(f"pruning.prune_start={online_cfg.prune_start} is after the last epoch that may prune "
                     f"({pruning.last_prune_epoch(online_cfg, c.num_epochs)})")
  final = None
  if c.final_prune.enabled and svd is not None:
    check_in_range("final_prune.energy", c.final_prune.energy, 0.0, 1.0, low_closed=False, high_closed=False)
    final = dataclasses.replace(online_cfg, strategy=c.final_prune.strategy, energy=c.final_prune.energy,
                                min_rank=c.final_prune.min_rank)
  online = online_cfg if c.pruning.enabled and svd is not None else None
  slim_epoch = None
  if c.slimming.enabled:
    check_in_range("slimming.amount", c.slimming.amount, 0.0, 1.0, low_closed=True, high_closed=False)
    check_min_int("slimming.min_channels", c.slimming.min_channels, 1)
    slim_epoch = c.slimming.prune_epoch
    if not isinstance(slim_epoch, int) or not 1 <= slim_epoch < c.num_epochs:
      raise ValueError(f"slimming.prune_epoch must be an int in [1, num_epochs={c.num_epochs}), got {slim_epoch!r}")
  return Plan(svd, reg, online, final, online_cfg, slim_epoch)


@dataclasses.dataclass
class Run:
  """Everything the loop carries between epochs (host side)."""
  state: Any  # TrainState placed for the parallel mode
  rng: jax.Array
  epoch: int
  ranks: dict
  original_ranks: dict
  history: list
  events: list
  pruned_channels: dict | None = None  # network slimming: {BN path: [channel, ...]} once pruned


def _model(c, plan: Plan, ranks, bn_axis_name=None):
  return build_model(c.model, _num_classes(c), plan.svd, ranks=ranks if plan.svd else None, bn_axis_name=bn_axis_name,
                     inner_widths=c.inner_widths)


def _num_classes(c) -> int:
  return data.NUM_CLASSES[c.dataset]


def _meta(c, run: Run, state, input_shape, plan: Plan) -> dict:
  best = max((h["test_accuracy"] for h in run.history), default=None)
  return {"model": checkpoint.model_meta(c.model, _num_classes(c), plan.svd, c.inner_widths), "ranks": run.ranks,
          "original_ranks": run.original_ranks, "input_shape": list(input_shape), "epoch": run.epoch,
          "step": int(jax.device_get(state.step)), "history": run.history, "pruning_events": run.events,
          "best_test_accuracy": best, "pruned_channels": run.pruned_channels,
          "config": json.loads(c.to_json_best_effort())}


def init_run(c, plan, par, input_shape, tx_factory) -> Run:
  rng, init_rng = jax.random.split(jax.random.key(c.seed))
  model = _model(c, plan, None, par.bn_axis_name)
  variables = jax.jit(model.init)(init_rng, jnp.zeros((1, *input_shape), jnp.float32))
  state = TrainState.create(model.apply, variables, tx_factory(variables["params"]))
  ranks = read_ranks(variables["params"])
  return Run(par.place(state), rng, 0, ranks, dict(ranks), [], [])


def resume_run(c, plan, par, mngr, step, tx_factory) -> Run:
  meta = checkpoint.read_meta(mngr.directory, step)
  model = _model(c, plan, meta["ranks"], par.bn_axis_name)
  variables = checkpoint.restore_variables(mngr.directory, step, model, meta["input_shape"])
  params = variables.pop("params")
  channels = meta.get("pruned_channels")
  tx = tx_factory(params, slimming.masks_from_channels(params, channels) if channels is not None else None)
  train = checkpoint.restore_train(mngr.directory, step, jax.eval_shape(tx.init, params))
  state = TrainState(step=train["step"], params=params, model_state=variables, opt_state=train["opt_state"],
                     apply_fn=model.apply, tx=tx)
  log.info("resumed from %s step %d (epoch %d, total rank %d)", mngr.directory, step, meta["epoch"],
           total_rank(meta["ranks"]))
  return Run(par.place(state), train["rng"], meta["epoch"], meta["ranks"], meta["original_ranks"],
             meta["history"], meta.get("pruning_events", []), channels)


def slim_event(c, par, run: Run, tx_factory) -> float:
  """Network slimming: zero the BN channels of smallest |γ| (globally) and fine-tune with them held at zero
  (fresh optimizer without the γ-L1 term, as Liu et al. fine-tune)."""
  start = time.perf_counter()
  host = par.host_state(run.state)
  masks = slimming.channel_masks(host.params, c.slimming.amount, c.slimming.min_channels)
  params = masks_lib.make_permanent(host.params, masks)
  tx = tx_factory(params, masks)
  run.state = par.place(host.replace(params=params, tx=tx, opt_state=tx.init(params)))
  run.pruned_channels = slimming.pruned_channels(masks)
  counts = slimming.summary(masks)
  run.events.append({"epoch": run.epoch, "kind": "slimming", **counts})
  log.info("slimming after epoch %d: %d of %d BN channels kept", run.epoch, counts["channels_after"],
           counts["channels_before"])
  return time.perf_counter() - start


def prune_event(c, plan, par, run: Run, cfg: pruning.PruneConfig, label: str) -> float:
  start = time.perf_counter()
  host = par.host_state(run.state)
  new_params, new_ranks, report = pruning.prune(host.params, cfg, run.original_ranks)
  if report.changed:
    model = _model(c, plan, new_ranks, par.bn_axis_name)
    run.state = par.place(host.after_pruning(new_params, model.apply, report, cfg.opt_state))
    run.ranks = new_ranks
  run.events.append({"epoch": run.epoch, "kind": label, "total_rank": total_rank(new_ranks)})
  log.info("%s prune after epoch %d: %s", label, run.epoch, report.summary())
  return time.perf_counter() - start


def evaluate(par, state, ds, mean, std, batch_size) -> dict:
  sums = None
  for batch in data.eval_batches(ds.test_images, ds.test_labels, batch_size, mean, std):
    out = par.eval_step(state, par.shard_batch(batch))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  sums = par.metrics(sums)
  return {"test_loss": sums["loss_sum"] / sums["count"], "test_accuracy": sums["correct"] / sums["count"]}


def train_epoch(c, par, run: Run, ds, mean, std, reg) -> dict:
  seed = [int(x) for x in np.asarray(jax.random.key_data(jax.random.fold_in(run.rng, run.epoch)))]
  batches = data.train_batches(ds.train_images, ds.train_labels, c.batch_size, seed, run.epoch, mean, std,
                               c.augment, c.max_steps_per_epoch)
  total = data.num_train_batches(len(ds.train_images), c.batch_size, c.max_steps_per_epoch)
  bar = tqdm.tqdm(batches, total=total, desc=f"epoch {run.epoch}", disable=not c.progress_bar, leave=False)
  sums, steps, start = None, 0, time.perf_counter()
  for batch in bar:
    run.state, metrics = par.train_step(run.state, par.shard_batch(batch), reg)
    sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    steps += 1
    if steps % 20 == 0 and c.progress_bar:
      host = par.metrics(metrics)
      bar.set_postfix(loss=f"{host['loss']:.3f}", acc=f"{host['accuracy']:.3f}",
                      img_s=f"{steps * c.batch_size / (time.perf_counter() - start):.0f}")
  if steps == 0:
    raise ValueError(f"batch_size={c.batch_size} is larger than the training set ({len(ds.train_images)})")
  means = {k: v / steps for k, v in par.metrics(sums).items()}
  elapsed = time.perf_counter() - start
  return {**{f"train_{k}": v for k, v in means.items()}, "time_train": elapsed,
          "images_per_sec": steps * c.batch_size / elapsed}


def run(c, workdir: str, stop_after_epoch: int | None = None) -> dict | None:
  """Trains (or resumes) the experiment described by config ``c`` in ``workdir``; returns the summary.

  ``stop_after_epoch`` ends this process early (after that epoch's checkpoint), as a preemption
  would; running again with the same workdir resumes. Returns None when stopped early.
  """
  plan = make_plan(c)
  os.makedirs(workdir, exist_ok=True)
  ds = data.load_dataset(c.dataset, c.data_dir, c.data_source).subset(c.train_subset, c.test_subset)
  mean, std = data.normalization(ds.train_images)
  par = DataParallel(c.parallel, c.num_devices)
  steps_per_epoch = data.num_train_batches(len(ds.train_images), c.batch_size, c.max_steps_per_epoch)
  tx_factory = functools.partial(_optimizer, c, max(steps_per_epoch, 1))
  mngr = checkpoint.manager(os.path.join(workdir, "checkpoints"), c.checkpoint.max_to_keep, "test_accuracy",
                            async_save=c.checkpoint.async_save)
  latest = mngr.latest_step()
  r = (resume_run(c, plan, par, mngr, latest, tx_factory) if latest is not None
       else init_run(c, plan, par, ds.input_shape, tx_factory))
  writer = reporting.MetricsWriter(workdir, c.tensorboard)
  cost_cache: dict = {}
  compiles_before = None
  try:
    while r.epoch < c.num_epochs:
      r.epoch += 1
      finetune = pruning.in_finetune(r.epoch, plan.schedule, c.num_epochs)
      reg = dataclasses.replace(plan.reg, sparsity=0.0) if finetune else plan.reg
      row = {"epoch": r.epoch, **train_epoch(c, par, r, ds, mean, std, reg)}
      if not np.isfinite(row["train_loss"]):
        raise FloatingPointError(
            f"training loss became {row['train_loss']} in epoch {r.epoch}; stopped without saving. "
            f"Last good checkpoint: step {mngr.latest_step()} in {mngr.directory}")
      if compiles_before is not None:
        log.info("recompiled for new ranks: %d new compile(s) of train_step", par.train_step.traces - compiles_before)
        compiles_before = None
      start = time.perf_counter()
      row.update(evaluate(par, r.state, ds, mean, std, c.eval_batch_size))
      row["time_eval"] = time.perf_counter() - start
      row["time_prune"] = 0.0
      ranks_before = dict(r.ranks)
      if plan.online is not None and pruning.should_prune(r.epoch, plan.online, c.num_epochs):
        row["time_prune"] += prune_event(c, plan, par, r, plan.online, "online")
      if plan.final is not None and r.epoch == c.num_epochs - plan.schedule.finetune_epochs:
        row["time_prune"] += prune_event(c, plan, par, r, plan.final, "final")
      if plan.slim_epoch == r.epoch:
        row["time_prune"] += slim_event(c, par, r, tx_factory)
      if r.ranks != ranks_before:
        compiles_before = par.train_step.traces
      cost = _cost(c, plan, r.ranks, ds.input_shape, cost_cache)
      row.update(total_rank=total_rank(r.ranks), params=cost.params, macs=cost.macs, finetune=int(bool(finetune)))
      r.history.append(row)
      writer.write(row)
      log.info(reporting.epoch_line(row))
      state = par.host_state(r.state)
      checkpoint.save(mngr, state, r.rng, _meta(c, r, state, ds.input_shape, plan),
                      metrics={"test_accuracy": row["test_accuracy"]})
      if stop_after_epoch is not None and r.epoch >= stop_after_epoch and r.epoch < c.num_epochs:
        return None
    mngr.wait_until_finished()
    return finish(c, plan, par, r, ds, workdir, cost_cache)
  finally:
    mngr.wait_until_finished()
    mngr.close()
    writer.close()


def _optimizer(c, steps_per_epoch: int, params, slim_masks=None):
  """The run's optax transform; after slimming: no γ-L1, and the pruned channels kept at zero."""
  if slim_masks is None:
    return optim.make_optimizer(c.optimizer, params, steps_per_epoch, c.num_epochs)
  cfg = {**c.optimizer.to_dict(), "bn_l1": 0.0}
  return optax.chain(optim.make_optimizer(cfg, params, steps_per_epoch, c.num_epochs),
                     masks_lib.keep_pruned(slim_masks))


def _cost(c, plan, ranks, input_shape, cache) -> flops.CostReport:
  key = tuple(sorted(ranks.items()))
  if key not in cache:
    cache[key] = flops.count(_model(c, plan, ranks), input_shape)
  return cache[key]


def finish(c, plan, par, r: Run, ds, workdir, cost_cache) -> dict:
  state = par.host_state(r.state)
  before = _cost(c, plan, r.original_ranks, ds.input_shape, cost_cache)
  after = _cost(c, plan, r.ranks, ds.input_shape, cost_cache)
  last = r.history[-1]
  summary = {"test_accuracy": last["test_accuracy"], "params_before": before.params, "params_after": after.params,
             "svd_params_before": before.svd_params(), "svd_params_after": after.svd_params(),
             "macs_before": before.macs, "macs_after": after.macs, "flops_speedup": before.macs / max(after.macs, 1),
             "rank_before": total_rank(r.original_ranks), "rank_after": total_rank(r.ranks), "epochs": r.epoch}
  if r.pruned_channels is not None:
    channels = sum(slimming.bn_layers(state.params).values())
    summary.update(bn_channels_before=channels,
                   bn_channels_after=channels - sum(len(v) for v in r.pruned_channels.values()))
  if plan.svd is not None:
    dense_model = build_model(c.model, _num_classes(c), None, inner_widths=c.inner_widths)
    template = checkpoint.abstract_variables(dense_model, ds.input_shape)["params"]
    merged = {"params": export.merge(state.params, template), **state.model_state}
    factored = {"params": export.factored(state.params), **state.model_state}
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(os.path.abspath(os.path.join(workdir, "export", "merged")), merged, force=True)
      ckptr.save(os.path.abspath(os.path.join(workdir, "export", "factored")), factored, force=True)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  table = reporting.summary_table(summary)
  log.info("summary\n%s", table)
  if c.plots:
    summary["plots"] = reporting.plot_all(workdir, r.history, jax.device_get(state.params))
  return summary
