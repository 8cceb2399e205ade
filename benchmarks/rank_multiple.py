"""What rounding kept ranks up to a multiple (``Floors(rank_multiple=m)``) costs and buys, on a trained checkpoint.

  python -m benchmarks.rank_multiple --workdir=RUN [--energies 0.01,0.05] [--multiples 1,4,8,16] [--batch 500]
  python -m benchmarks.rank_multiple --quick      # a tiny trained run made on the spot (numbers meaningless)
RUN is a finished Fashion-MNIST run of an SVD model (e.g. the regularize stage of ``experiments.paper_recipe`` with
``experiments/configs/fashion_mnist_recipe.py``). Its latest checkpoint is pruned once per (energy e, multiple m) by
the energy strategy, the pruned model evaluated on the whole test set with the run's own normalization, and every
variant timed as deployed (BatchNorm folded, plan and XLA options autotuned; ``jaxsvd.deploy``/``artifact``),
alternately in one process. m = 1 is plain energy pruning; m > 1 keeps each layer's rank rounded up to a multiple of
m, so accuracy can only rise (more directions kept) and MACs rise too; the question is whether latency falls.
"""

from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import jax

from benchmarks import common
from benchmarks.pruned_inference import folded_runner
from jaxsvd import checkpoint, data
from jaxsvd.core.structure import total_rank
from jaxsvd.linen import flops
from jaxsvd.pruning import Floors, Strategy, rank


def variants(restored, energies, multiples):
  """{(e, m): (model, variables, ranks)} of the checkpoint pruned by energy e with rank_multiple m."""
  record, variables = restored.architecture, restored.variables
  out = {}
  for energy in energies:
    for multiple in multiples:
      params, ranks, _ = rank.prune(variables["params"], Strategy("energy", energy=energy),
                                    Floors(rank_multiple=multiple), record.original_ranks)
      pruned = record.replace(ranks=ranks)
      out[(energy, multiple)] = (pruned.build_model(), {**variables, "params": params}, ranks)
  return out


def main():
  p = common.parser(__doc__)
  p.add_argument("--workdir", default="")
  p.add_argument("--data_dir", default=None, help="Fashion-MNIST IDX directory (default: the Debian package's)")
  p.add_argument("--energies", default="0.01,0.05")
  p.add_argument("--multiples", default="1,4,8,16")
  args = p.parse_args()
  batch_size, repeats = (32, 1) if args.quick else (args.batch, args.repeats)
  with tempfile.TemporaryDirectory() as tmp:
    workdir, data_dir = common.quick_svd_run(tmp) if args.quick else (args.workdir, args.data_dir)
    restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
    ds = data.load_fashion_mnist(data_dir)
  record = restored.architecture
  mean, std = data.dataset_normalization("fashion_mnist", ds.train_images, "auto")
  x = next(data.eval_batches(ds.test_images[:batch_size], ds.test_labels[:batch_size], batch_size, mean, std))["image"]
  energies = [float(e) for e in args.energies.split(",")]
  multiples = [1, 8] if args.quick else [int(m) for m in args.multiples.split(",")]
  dense_macs = flops.count(record.replace(ranks=record.original_ranks).build_model(), record.input_shape).macs
  rows, runners = [], {}
  for (energy, multiple), (model, variables, ranks) in variants(restored, energies, multiples).items():
    label = f"e={energy:g} m={multiple}"
    runners[label] = folded_runner(SimpleNamespace(variables=variables), model, x, ("auto", "merged", "measured"))[0]
    cost = flops.count(model, record.input_shape)
    rows.append({"prune": label, "total rank": total_rank(ranks), "MACs/img": f"{cost.macs / 1e6:.2f}M",
                 "MACs red.": f"{dense_macs / cost.macs:.2f}x",
                 "test acc": f"{common.eval_accuracy(model, variables, ds.test_images, ds.test_labels, mean, std):.2%}"})
  t = common.alternate(runners, repeats)
  for row in rows:
    plain = row["prune"].split(" m=")[0] + " m=1"  # the same energy without rounding
    row["ms/batch"] = f"{t[row['prune']] * 1e3:.1f}"
    row["speedup vs m=1"] = f"{t[plain] / t[row['prune']]:.2f}x" if plain in t else "-"
  print(f"backend={jax.default_backend()} batch={batch_size} repeats={repeats} (median, alternated, folded+autotuned)")
  print(common.table(rows, list(rows[0])))
  print("KEY " + ", ".join(f"{r['prune']}: acc {r['test acc']} rank {r['total rank']} {r['speedup vs m=1']}"
                           for r in rows))


if __name__ == "__main__":
  main()
