"""Shared benchmark helpers: median-of-repeats timing after warm-up, and ready-made train states."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd import data, pruning
from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training import optim, xla_options
from jaxsvd.training.train_state import EVAL_VARIANTS, TrainState, eval_step, train_step


def parser(doc: str, model: str | None = None) -> argparse.ArgumentParser:
  """Common flags; with ``model`` also --model (its default), replaced by resnet8 under --quick."""
  p = argparse.ArgumentParser(description=doc)
  if model is not None:
    p.add_argument("--model", default=model)
  p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (numbers meaningless)")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--batch", type=int, default=128)
  return p


def parse_models(doc: str) -> tuple[list[str], int, int]:
  """(--models list, batch size, repeats) for scripts that compare several models; resnet8 under --quick."""
  p = parser(doc)
  p.add_argument("--models", default="resnet20,resnet18", help="resnet8/20/32/56/110 (option A) and resnet18 (option B)")
  args = p.parse_args()
  return (["resnet8"] if args.quick else args.models.split(",")), *sizes(args)


def sizes(args) -> tuple[int, int]:
  """(batch size, repeats): tiny for --quick."""
  return (8, 1) if args.quick else (args.batch, args.repeats)


def model_name(args) -> str:
  return "resnet8" if args.quick else args.model


def block(tree):
  jax.block_until_ready(tree)
  return tree


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def batch(batch_size: int, image: int = 32, classes: int = 10):
  rng = np.random.default_rng(0)
  return {"image": jnp.asarray(rng.normal(size=(batch_size, image, image, 3)), jnp.float32),
          "label": jnp.asarray(rng.integers(0, classes, batch_size), jnp.int32)}


def make_state(model_name: str, svd: SVDSpec | None, image: int = 32, rank_fraction: float | None = None,
               optimizer: str = "sgd", widths: dict | None = None, compute_dtype: str = "float32"):
  """A TrainState of ``model_name`` (at channel ``widths``, convs in ``compute_dtype``); with ``rank_fraction`` the
  SVD layers are pruned."""
  model = build_model(model_name, 10, svd, widths=widths, compute_dtype=compute_dtype)
  variables = model.init(jax.random.key(0), jnp.zeros((1, image, image, 3)))
  params = variables["params"]
  if svd is not None and rank_fraction is not None:
    cfg = pruning.Strategy("ratio", reduce_by=1.0 - rank_fraction)
    params, new_ranks, _ = pruning.prune(params, cfg)
    model = build_model(model_name, 10, svd, ranks=new_ranks, widths=widths, compute_dtype=compute_dtype)
    variables = {**variables, "params": params}
  tx = optim.make_optimizer(dict(optimizer=optimizer, learning_rate=0.01, momentum=0.9), params, 100, 1)
  return TrainState.create(model.apply, variables, tx), model


def jit(fn, tuned: bool = True, **kwargs):
  """jit with the library's tuned XLA options (as training uses), or with XLA's defaults."""
  return xla_options.jit(fn, **kwargs) if tuned else jax.jit(fn, **kwargs)


def train_runner(state, data, reg, tuned: bool = True, steps: int = 1) -> Callable[[], object]:
  """A no-argument callable running ``steps`` train steps (on a copy of ``state``, which the step donates)."""
  step = jit(train_step, tuned, static_argnums=(2,), donate_argnums=(0,))
  holder = {"state": jax.tree.map(lambda x: x.copy(), state)}

  def once():
    for _ in range(steps):
      holder["state"], metrics = step(holder["state"], data, reg)
    return metrics

  return once


def eval_runner(state, data, tuned: bool | str = True) -> Callable[[], object]:
  """One eval step on ``data``: tuned=True/False as in ``jit``, or "auto" for ``xla_options.autotuned_jit`` over
  options and ``EVAL_VARIANTS`` (what training's eval and ``load_for_inference`` use; the runner's
  ``.choices`` tells what it picked, ``describe(runner)`` in words)."""
  fn = xla_options.autotuned_jit(eval_step, variants=EVAL_VARIANTS) if tuned == "auto" else jit(eval_step, tuned)
  run = lambda: fn(state, data)  # noqa: E731
  if tuned == "auto":
    while not fn.choices:  # finish the tuning calls before anything is timed
      block(run())
  run.choices = getattr(fn, "choices", None)
  return run


def describe(runner) -> str:
  """'options/mode' that an autotuned runner chose, e.g. 'default/reconstruct' ('-' if not autotuned)."""
  chosen = list((getattr(runner, "choices", None) or {}).values())
  if not chosen:
    return "-"
  mode = chosen[0].variant.get("mode") or "own"
  return f"{xla_options.describe(chosen[0].options)}/{mode}"


def alternate(fns: dict, repeats: int) -> dict:
  """Median seconds per fn, timing the fns in turn (after 2 warm-up calls each): ``xla_options.alternate``."""
  return xla_options.alternate(fns, repeats)


def time_train_steps(state, data, reg, repeats, tuned: bool = True) -> float:
  return median_time(train_runner(state, data, reg, tuned), repeats)


def time_eval(state, data, repeats, tuned: bool = True) -> float:
  return median_time(eval_runner(state, data, tuned), repeats)


def total_rank(state) -> int:
  return sum(read_ranks(state.params).values())


def table(rows: list[dict], columns: list[str]) -> str:
  """A plain-text table; a row without a column shows '-' there."""
  widths = {c: max(len(c), *(len(str(r.get(c, "-"))) for r in rows)) for c in columns}
  lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-+-".join("-" * widths[c] for c in columns)]
  lines += [" | ".join(str(r.get(c, "-")).ljust(widths[c]) for c in columns) for r in rows]
  return "\n".join(lines)


def eval_accuracy(model, variables, images, labels, mean, std, batch_size=500) -> float:
  """Test accuracy of ``model`` (eval mode) on normalized ``images``."""
  predict = jax.jit(lambda v, x: model.apply(v, x, train=False).argmax(-1))
  correct = sum(float(((np.asarray(predict(variables, b["image"])) == b["label"]) * b["mask"]).sum())
                for b in data.eval_batches(images, labels, batch_size, mean, std))
  return correct / len(labels)


def quick_svd_run(tmp: str) -> tuple[str, str]:
  """A tiny trained SVD run (and its data directory) for the --quick smoke test."""
  from experiments.run import loop
  from tests import helpers
  data_dir = helpers.write_fashion_mnist(os.path.join(tmp, "data"), n_train=64, n_test=32)
  c = helpers.tiny_config(data_dir, num_epochs=1, max_steps_per_epoch=2, batch_size=16, eval_batch_size=16,
                          **{"pruning.enabled": False, "final_prune.enabled": False, "finetune_epochs": 0})
  loop.run(c, os.path.join(tmp, "run"))
  return os.path.join(tmp, "run"), data_dir
