"""Pruning from scratch (Wang et al. 2020) on a CIFAR ResNet: learn channel gates on the random init, pick the
block widths that fit a MACs budget, then train that architecture from scratch with the normal loop.

  python -m experiments.pruning_from_scratch --config=fashion_mnist_from_scratch --workdir=runs/pfs
Flags as for ``experiments.cifar_svd``: --config=NAME|FILE.py[:ARGS] (--list_configs), --config.<field>=VALUE,
--workdir=DIR (default runs/from_scratch).
``workdir/widths.json`` records the search (widths, MACs before/after); re-running resumes the training
phase and does not search again. The method and its config fields: docs/pruning.md#pruning-from-scratch.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import jax.numpy as jnp
from absl import app

from experiments.run import cli, plan, preflight
from experiments.run import epoch as epoch_lib
from experiments.run import loop as train
from experiments.tasks import image_classification
from jaxsvd import data
from jaxsvd.checkpoint.workdir import lock as workdir_lock
from jaxsvd.core.validate import check_choice, check_in_range, check_min_int, check_nonnegative
from jaxsvd.linen import flops
from jaxsvd.models import build_model
from jaxsvd.pruning import from_scratch
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.parallel import DataParallel
from jaxsvd.training.train_state import TrainState

log = logging.getLogger("jaxsvd")


def search_gates(c, ds) -> dict:
  """Gates learned with frozen random weights: {conv path: |α|}.

  Args:
    c: the experiment config (model, dataset, seed, batch and ``from_scratch`` fields).
    ds: the dataset.

  Returns:
    {conv path: |α|} after ``c.from_scratch.search_epochs`` epochs of training the gates of the dense model.
  """
  fs = c.from_scratch
  model = build_model(c.model, data.NUM_CLASSES[c.dataset], None, gated=fs.gates == "block",
                      compute_dtype=c.compute_dtype)
  variables = jax.jit(model.init)(jax.random.key(c.seed), jnp.zeros((1, *ds.input_shape), jnp.float32))
  variables["params"], tx, paths = from_scratch.prepare_search(variables["params"], model.channel_groups(), fs.gates,
                                                               fs.init, fs.learning_rate, fs.weight, fs.penalty,
                                                               fs.ratio)
  state = TrainState.create(model.apply, variables, tx)
  par = DataParallel("none")
  mean, std = data.normalization(ds.train_images)
  no_reg = RegularizerConfig(orthogonality=0.0, sparsity=0.0)
  total = data.num_train_batches(len(ds.train_images), c.batch_size, c.max_steps_per_epoch)
  for epoch in range(1, c.from_scratch.search_epochs + 1):
    batches = data.train_batches(ds.train_images, ds.train_labels, c.batch_size, c.seed, epoch, mean, std,
                                 c.augment, c.max_steps_per_epoch)
    state, row = epoch_lib.train_epoch(c, par, par.place(state), batches, no_reg, epoch_lib.Progress(epoch), total)
    log.info("gate search epoch %d: loss %.4f accuracy %.3f", epoch, row["train_loss"], row["train_accuracy"])
  return from_scratch.gates(state.params, paths)


def search(c, workdir: str) -> dict:
  """Widths for the budget (from ``workdir/widths.json`` if an earlier run found them).

  A new search writes its record (widths, MACs and channels before and after, budget) to ``workdir/widths.json``.

  Args:
    c: the experiment config.
    workdir: the run's directory.

  Returns:
    {conv path: width} (``widths`` of ``build_model`` and of the architecture record).

  Raises:
    ValueError: if even one channel per block exceeds the MACs budget.
  """
  path = os.path.join(workdir, "widths.json")
  if os.path.exists(path):
    with open(path) as f:
      found = json.load(f)
    if "widths" not in found:  # written before widths were keyed by conv path
      return {f"{block}/conv1": width for block, width in found["inner_widths"].items()}
    return found["widths"]
  ds = image_classification.load_data(c)
  gate_values = search_gates(c, ds)
  macs_of = lambda widths: flops.count(build_model(c.model, data.NUM_CLASSES[c.dataset], None,  # noqa: E731
                                                   widths=widths), ds.input_shape).macs
  record = from_scratch.search_report(gate_values, macs_of, c.from_scratch.budget,
                                      c.from_scratch.get("channel_multiple", 1))
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(record, f, indent=2)
  log.info("pruned architecture: %d -> %d inner channels, MACs %d -> %d (%.2fx fewer)", record["channels_full"],
           record["channels_pruned"], record["macs_full"], record["macs_pruned"],
           record["macs_full"] / record["macs_pruned"])
  return record["widths"]


def validate(c) -> None:
  """One-line errors for the whole experiment before anything is compiled.

  Args:
    c: the experiment config.

  Returns:
    None.

  Raises:
    ValueError: one line naming a bad field, or a model that is not a ResNet.
  """
  plan.make_plan(c)
  check_min_int("from_scratch.search_epochs", c.from_scratch.search_epochs, 1)
  fs = c.from_scratch
  check_in_range("from_scratch.budget", fs.budget, 0.0, 1.0, low_closed=False, high_closed=True)
  check_min_int("from_scratch.channel_multiple", fs.get("channel_multiple", 1), 1)
  from_scratch.gate_optimizer([], fs.learning_rate, fs.weight, fs.penalty, fs.ratio)  # checks its fields
  check_choice("from_scratch.gates", fs.gates, from_scratch.GATE_KINDS)
  check_nonnegative("from_scratch.init", fs.init)
  if fs.gates == "block" and not c.model.startswith("resnet"):
    raise ValueError(f"from_scratch.gates='block' gates ResNet blocks; model={c.model!r} is not a ResNet "
                     f"(use gates='bn')")


def run(c, workdir: str, stop_after_epoch: int | None = None) -> dict | None:
  """Search (once), then ``train.run`` on the pruned architecture from a fresh random init.

  Args:
    c: the experiment config; ``c.widths`` is set to the searched widths.
    workdir: the run's directory.
    stop_after_epoch: as for ``train.run``.

  Returns:
    ``train.run``'s summary, or None when stopped early.

  Raises:
    ValueError: one line naming a bad field.
  """
  validate(c)
  preflight.check_workdir(workdir)
  with workdir_lock(workdir):  # one process per workdir from the search on (train.run re-enters it)
    c.widths = search(c, workdir)
    return train.run(c, workdir, stop_after_epoch)


main = cli.main_for(run, "fashion_mnist_from_scratch", "runs/from_scratch", lock_config=False)

if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
