"""Compress a finished run (dense or SVD) to a MACs budget with data-aware SVD, or an SVD run by an energy
threshold, then optionally fine-tune.

  python -m experiments.compress --source=runs/fmnist_dense --workdir=runs/fmnist_compressed
  python -m experiments.compress --config=compress --source=RUN --workdir=OUT
      --config.method=whitened --config.macs_reduction=3 --config.finetune_epochs=1

1. The source's latest checkpoint is restored (an SVD run is merged to its dense kernels first).
2. ``calibration_examples`` training images (the config's data, as training normalizes them) give each SVD layer's
   input statistics (``jaxsvd.linen.calibration``).
3. Ranks meeting dense MACs / ``macs_reduction`` are allocated by ``method``'s error spectra and every layer is
   decomposed by ``method`` (``jaxsvd.pruning.compress``: plain | activation | whitened); with ``norm_aware`` the
   data-aware methods measure each conv's error after the BatchNorm that follows it.
4. The compressed model is evaluated and saved as an ordinary run (step 0, ``outputs.finish``: summary.json, final_params/,
   plots) to ``workdir`` or, with ``finetune_epochs`` > 0, to ``workdir/compressed``, from which ``loop.run``
   fine-tunes (the config's optimizer and SVD regularizers, no pruning) into ``workdir``.
With ``method=energy`` (an SVD run only) steps 1–3 are one prune of the source's own factors instead: each layer keeps
all but the fraction ``energy`` of its Σ s² (``energy_rule``, as ``final_prune`` prunes; Yang et al. 2020), whatever
MACs that leaves (``macs_reduction`` is not used).
``workdir/summary.json`` adds ``method``, ``ranks`` and, for each of the task's summary metrics M (image
classification: ``test_accuracy``; a language model: ``test_perplexity``, ``test_bits_per_byte``, ``test_loss``),
``source_M`` and ``M_before_finetune``. A language-model run (``experiments.lm_svd``) compresses with a config of its
task: ``--config=stdlib_lm_compress``; its user model is built by the task (``Task.model``) and its layers' matrix views
come from ``svdify``'s report.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil

import jax
import numpy as np
from absl import app

from experiments import tasks
from experiments.run import cli, loop, outputs
from experiments.run import epoch as epoch_lib
from experiments.run.plan import initial_architecture
from experiments.run.prune_stage import prune_stage
from jaxsvd import checkpoint
from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import conv_view, simple_view
from jaxsvd.core.structure import iter_svd_layers, total_rank
from jaxsvd.core.tree import get_node
from jaxsvd.core.validate import check_choice, check_min_int, check_nonnegative
from jaxsvd.deploy.params import merged_params
from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.linen.conversion import unbox_tree
from jaxsvd.linen.svdifylib import SVDModel
from jaxsvd.pruning import compress as compress_lib
from jaxsvd.pruning.strategies.energy import ENERGY_RULES
from jaxsvd.training import distributed
from jaxsvd.training.train_state import TrainState

log = logging.getLogger("jaxsvd")


def check_config(c) -> None:
  """One-line ``ValueError`` naming the first bad compress field (before anything is loaded or compiled)."""
  if not c.source or not isinstance(c.source, str):
    raise ValueError("source: name the finished run to compress (--source=RUN)")
  check_choice("method", c.method, (*calibration.METHODS, "energy"))
  if c.method == "energy":
    check_choice("energy_rule", c.energy_rule, ENERGY_RULES)
    low = 0.0 if c.energy_rule != "smallest_k" else float.fromhex("0x1p-1074")
    if isinstance(c.energy, bool) or not isinstance(c.energy, (int, float)) or not low <= c.energy < 1.0:
      span = "(0, 1)" if c.energy_rule == "smallest_k" else "[0, 1)"
      raise ValueError(f"energy must be a fraction in {span} of each layer's Σ s², got {c.energy!r}")
  if not isinstance(c.macs_reduction, (int, float)) or not c.macs_reduction >= 1.0:
    raise ValueError(f"macs_reduction must be a number >= 1, got {c.macs_reduction!r}")
  check_min_int("calibration_examples", c.calibration_examples, 1)
  check_min_int("finetune_epochs", c.finetune_epochs, 0)
  check_nonnegative("alpha", c.alpha)
  if not isinstance(c.norm_aware, bool):
    raise ValueError(f"norm_aware must be true or false, got {c.norm_aware!r}")
  if not os.path.isdir(os.path.join(c.source, "checkpoints")):
    raise ValueError(f"source: {c.source!r} holds no checkpoints/ (not a finished run)")
  if c.method == "energy" and not is_svd_run(c.source):
    raise ValueError(f"source: {c.source!r} is a dense run; method=energy prunes an SVD run's own singular values "
                     "(a dense run: method=plain | activation | whitened)")


def is_svd_run(source: str) -> bool:
  """Whether the latest checkpoint of run ``source`` holds SVD layers (its architecture record has an SVD spec)."""
  directory, step = checkpoint.resolve(os.path.join(source, "checkpoints"))
  return checkpoint.read_architecture(directory, step).svd is not None


def restore_dense(source: str, task: tasks.Task):
  """(the source's record, its dense architecture, dense variables) from its latest checkpoint, its models built by
  ``task`` (the compress config's: a language model's run needs a language-model config)."""
  directory, step = checkpoint.resolve(os.path.join(source, "checkpoints"))
  saved = checkpoint.read_architecture(directory, step)
  theirs = checkpoint.read_meta(directory, step).get("config", {}).get("task", tasks.DEFAULT)
  if theirs != task.name:
    raise ValueError(f"source: {source!r} is a {theirs} run, the config's task is {task.name}: compress it with a "
                     f"config of its task (a language model: --config=stdlib_lm_compress)")
  if saved.user is not None and task.name == tasks.DEFAULT:
    raise ValueError(f"source: {source!r} is a user model's run; compress it with jaxsvd.linen.compress")
  dtype = (saved.user or {}).get("input_dtype", "float32")
  variables = checkpoint.restore_variables(directory, step, task.model(saved, None), saved.input_shape, dtype)
  dense = saved.dense()
  if saved.svd is not None:
    template = checkpoint.abstract_variables(task.model(dense, None), dense.input_shape, dtype)["params"]
    variables = {**variables, "params": merged_params(variables["params"], template, saved.svd.sigma)}
  return saved, dense, unbox_tree(variables)


def svd_views(full, dense_params, task: tasks.Task) -> dict:
  """{SVD layer path: ``MatrixView``} of the full-rank SVD architecture ``full``: a user model's from ``svdify``'s
  report, a zoo model's from the dense kernels' shapes."""
  model = task.model(full, None)
  if isinstance(model, SVDModel):
    return dict(model.report(jax.ShapeDtypeStruct((1, *full.input_shape), np.float32), train=False).views)
  svd_params = checkpoint.abstract_variables(model, full.input_shape)["params"]
  views = {}
  for path, _ in iter_svd_layers(unbox_tree(svd_params)):
    shape = tuple(np.shape(get_node(dense_params, path)["kernel"]))
    views[path] = conv_view(shape, 1, full.svd.decomposition) if len(shape) == 4 else simple_view(shape, 0, 1)
  return views


def calibration_batches(s, examples: int):
  """The first training batches (shuffled by the config's seed, normalized as training does) holding
  ≥ ``examples`` images."""
  seed = [int(s.c.seed), 0]
  count = -(-examples // s.c.batch_size)
  return [b["image"] for b in itertools.islice(s.inputs.train_batches(seed, 0), count)]


def compressed_state(s, c, dense, variables):
  """(architecture, TrainState) of the compressed model: statistics, ranks to the budget, decomposition."""
  params = variables["params"]
  full = initial_architecture(c, s.plan, dense.input_shape, {}, s.inputs.contract()).replace(
      widths=dense.widths, options=dense.options)
  views = svd_views(full, params, s.plan.task)
  batches = calibration_batches(s, c.calibration_examples)
  model = s.plan.task.model(dense, None)
  stats = linen_calibration.collect(model, variables, batches, views, train=False)
  if c.norm_aware:
    scales = linen_calibration.norm_scales(model, variables, (batches[0],), views, train=False)
    stats = {p: st.with_output_scale(scales.get(p)) for p, st in stats.items()}
  counter = loop.macs_counter(s.plan.task, full.replace(ranks={p: v.full_rank for p, v in views.items()}), views)
  ranks = compress_lib.allocate(compress_lib.spectra(params, views, c.method, stats, c.alpha), counter,
                                c.macs_reduction)
  new_params = calibration.decompose_params(params, views, ranks, c.method, stats, c.alpha)
  arch = full.replace(ranks=ranks, original_ranks={p: v.full_rank for p, v in views.items()})
  model_state = {k: v for k, v in variables.items() if k != "params"}
  state = TrainState.create(s.ctx.build_model(arch).apply, {"params": new_params, **model_state},
                            s.ctx.make_tx(arch, new_params))
  return arch, state


def compress_stage(c, workdir: str, source: dict) -> dict:
  """Steps 1–4 of the module doc into ``workdir`` (no training); returns the summary (``outputs.finish``)."""
  shutil.rmtree(os.path.join(workdir, "checkpoints"), ignore_errors=True)  # an interrupted compress is redone
  saved, dense, variables = restore_dense(c.source, tasks.of(c))
  s = loop.setup(c, workdir)
  metric = s.plan.task.best_metric
  try:
    arch, state = compressed_state(s, c, dense, variables)
    r = loop.Run(s.par.place(state), jax.random.key(c.seed), 0, arch, [], [])
    cost = s.cost(arch)
    row = {"epoch": 0, **epoch_lib.evaluate(s.par, r.state, s.inputs, s.plan.task),
           "total_rank": total_rank(arch.ranks), "params": cost.params,
           "macs": cost.macs // s.plan.task.units_per_example(tuple(arch.input_shape))}
    r.history, r.events = [row], [{"epoch": 0, "kind": "compress", "method": c.method, "ranks": arch.ranks}]
    log.info("compress (%s, %s× fewer MACs): %s %s -> %.4f", c.method, c.macs_reduction, metric.replace("_", " "),
             source.get(metric), row[metric])
    checkpoint.save(s.mngr, s.par.host_state(r.state), r.rng, arch, loop.run_info(c, r), {metric: row[metric]})
    s.mngr.wait_until_finished()
    summary = outputs.finish(s, r, workdir)
  finally:
    s.mngr.close()
  return {**summary, "ranks": dict(arch.ranks), "source_model": saved.model}


def source_summary(source: str) -> dict:
  """The source run's summary.json ({} when it has none)."""
  path = os.path.join(source, "summary.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def stage_config(c):
  """The run config the compress and fine-tune stages use: ``c`` (copied) in SVD form, no pruning, its
  ``finetune_epochs`` as ``num_epochs`` of plain training (the compress stage trains nothing; num_epochs only shapes
  its optimizer).

  Args:
    c: the compress config.

  Returns:
    The new config (``plan.make_plan`` validates it as the stages will run it).
  """
  c = c.copy_and_resolve_references()
  with c.unlocked():
    c.update(init_from=None, finetune_epochs=0, num_epochs=max(int(c.finetune_epochs), 1))
    c.svd.enabled = True
    c.pruning.enabled = False
    c.final_prune.enabled = False
  return c


def energy_stage(c, workdir: str) -> dict:
  """``method=energy``: the source's own SVD factors pruned once at ``c.energy`` (``prune_stage``) into ``workdir``."""
  c = c.copy_and_resolve_references()
  with c.unlocked():
    c.init_from = c.source
    c.final_prune.update(enabled=True, strategy="energy", energy=float(c.energy), energy_rule=c.energy_rule)
  return prune_stage(c, workdir)


def run(c, workdir: str) -> dict:
  """Compresses ``c.source`` into ``workdir`` (module doc); returns the summary written to workdir/summary.json."""
  check_config(c)
  epochs = int(c.finetune_epochs)
  c = stage_config(c)
  source = source_summary(c.source)
  stage = os.path.join(workdir, "compressed") if epochs > 0 else workdir
  compressed = energy_stage(c, stage) if c.method == "energy" else compress_stage(c, stage, source)
  metrics = [k for k in tasks.of(c).summary([compressed]) if k in compressed]  # the task's summary metrics
  summary = {k: v for k, v in compressed.items() if k != "plots"}
  if epochs > 0:
    with c.unlocked():
      c.init_from = stage
    summary = {k: v for k, v in loop.run(c, workdir).items() if k != "plots"}
  extra = {"method": c.method, **{f"source_{k}": source.get(k) for k in metrics},
           **({"energy": c.energy, "energy_rule": c.energy_rule} if c.method == "energy"
              else {"macs_reduction": c.macs_reduction}),
           **{f"{k}_before_finetune": compressed[k] for k in metrics}, "ranks": compressed["ranks"]}
  if distributed.is_primary():
    path = os.path.join(workdir, "summary.json")
    with open(path) as f:
      saved = json.load(f)
    with open(path, "w") as f:
      json.dump({**saved, **extra}, f, indent=2)
  return {**summary, **extra}


def _source_flag(argv):
  """``--source=RUN`` as ``--config.source=RUN`` (the config field)."""
  return [a.replace("--source", "--config.source", 1) if a.startswith("--source") else a for a in argv]


_main = cli.main_for(run, "compress", "runs/compressed")


def main(argv) -> None:
  """``python -m experiments.compress`` (``cli.main_for`` with ``--source`` accepted as a flag)."""
  _main(_source_flag(argv))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
