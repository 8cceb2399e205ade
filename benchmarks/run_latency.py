"""Eval latency of finished runs' models, side by side: each workdir's latest checkpoint as ``load_for_inference``
serves it (autotuned over XLA options and SVD execution modes), timed alternately in one process.

  python -m benchmarks.run_latency --workdirs runs/dense,runs/svd,runs/slim [--batch 500] [--repeats 5]
Prints ms per batch, MACs and params per image from the architecture record, and the speedup over the first run.
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np

from benchmarks import common
from jaxsvd.deploy.inference import load_for_inference
from jaxsvd.linen import flops


def _runner(apply, x):
  while not apply.choices:  # finish autotuning before anything is timed
    common.block(apply(x))
  return lambda: apply(x)


def _quick_workdirs(tmp: str) -> list[str]:
  """Two tiny runs (dense and SVD-pruned) for the --quick smoke test."""
  from experiments.run import loop
  from tests import helpers
  data_dir = helpers.write_fashion_mnist(os.path.join(tmp, "data"), n_train=64, n_test=16)
  out = []
  for name, overrides in (("dense", {"svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False}),
                          ("svd", {})):
    c = helpers.tiny_config(data_dir, num_epochs=2, max_steps_per_epoch=1, batch_size=16, eval_batch_size=16,
                            **{"pruning.start": 1, "finetune_epochs": 0, **overrides})
    loop.run(c, os.path.join(tmp, name))
    out.append(os.path.join(tmp, name))
  return out


def main():
  p = common.parser(__doc__)
  p.add_argument("--workdirs", default="")
  args = p.parse_args()
  batch_size, repeats = common.sizes(args)
  with tempfile.TemporaryDirectory() as tmp:
    workdirs = _quick_workdirs(tmp) if args.quick else args.workdirs.split(",")
    runners, rows = {}, []
    for workdir in workdirs:
      apply, record = load_for_inference(os.path.join(workdir, "checkpoints"))
      x = np.random.default_rng(0).normal(size=(batch_size, *record.input_shape)).astype(np.float32)
      runners[workdir] = _runner(apply, x)
      cost = flops.count(record.build_model(), record.input_shape)
      rows.append({"run": os.path.basename(os.path.normpath(workdir)), "MACs/img": f"{cost.macs / 1e6:.2f}M",
                   "params": f"{cost.params:,}"})
    t = common.alternate(runners, repeats)
  first = t[workdirs[0]]
  for row, workdir in zip(rows, workdirs):
    row.update({"ms/batch": f"{t[workdir] * 1e3:.1f}", "speedup": f"{first / t[workdir]:.2f}x"})
  print(f"backend={jax.default_backend()} batch={batch_size} repeats={repeats} (median, alternated)")
  print(common.table(rows, list(rows[0])))
  print("KEY speedup over " + rows[0]["run"] + ": " + ", ".join(f"{r['run']} {r['speedup']}" for r in rows[1:]))


if __name__ == "__main__":
  main()
