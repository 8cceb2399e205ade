"""An SVD-trained run pruned to a MACs budget by singular-value energy vs data-aware output energy.

  python -m benchmarks.data_aware_pruning --workdir=RUN [--reductions 2,3] [--data_dir DIR]
  python -m benchmarks.data_aware_pruning --quick     # a tiny trained run made on the spot (numbers meaningless)
RUN is a finished Fashion-MNIST SVD run (e.g. experiments/configs/fashion_mnist.py with pruning off). Its latest
checkpoint is pruned once per MACs reduction X by the 'budget' strategy, ranking each layer's directions by s_i²
(the paper's energy) or by their output energy s_i²·v_iᵀCv_i on 1024 training images
(``jaxsvd.core.calibration.output_importance``, ``prune(..., importance=)``); no fine-tuning. Prints test accuracy.
"""

from __future__ import annotations

import os
import tempfile

from benchmarks import common
from experiments.compress import svd_views
from jaxsvd import checkpoint, data
from jaxsvd.core import calibration
from jaxsvd.deploy.params import merged_params
from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.pruning import Strategy, budget, rank


def statistics(record, variables, images) -> dict:
  """Each SVD layer's input statistics, collected on the run's model merged to dense."""
  dense = record.dense()
  template = checkpoint.abstract_variables(dense.build_model(), dense.input_shape)["params"]
  dense_vars = {**variables, "params": merged_params(variables["params"], template, record.svd.sigma)}
  views = svd_views(record, dense_vars["params"])
  batches = [images[i:i + 256] for i in range(0, len(images), 256)]
  return linen_calibration.collect(dense.build_model(), dense_vars, batches, views, train=False)


def main():
  p = common.parser(__doc__)
  p.add_argument("--workdir", default="")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--reductions", default="2,3")
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    workdir, data_dir = common.quick_svd_run(tmp) if args.quick else (args.workdir, args.data_dir)
    restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
    ds = data.load_fashion_mnist(data_dir)
  record, variables = restored.architecture, restored.variables
  mean, std = data.dataset_normalization("fashion_mnist", ds.train_images, "auto")
  n = 64 if args.quick else 1024
  images = next(data.eval_batches(ds.train_images[:n], ds.train_labels[:n], n, mean, std))["image"]
  stats = statistics(record, variables, images)
  importance = calibration.output_importance(variables["params"], stats)
  macs = budget.MacsCounter.for_architecture(record, list(record.ranks))
  acc = common.eval_accuracy(record.build_model(), variables, ds.test_images, ds.test_labels, mean, std)
  print(f"unpruned: test accuracy {acc:.4f}, MACs {macs.at_ranks(record.ranks):,}")
  print("| MACs reduction | energy s² | output energy s²·vᵀCv |\n|---|---|---|")
  result = {}
  for x in [float(r) for r in args.reductions.split(",")][:1 if args.quick else None]:
    row = []
    for imp in (None, importance):
      params, ranks, _ = rank.prune(variables["params"], Strategy("budget", macs_reduction=x), macs=macs,
                                    original_ranks=record.original_ranks, importance=imp)
      model = record.replace(ranks=ranks).build_model()
      row.append(common.eval_accuracy(model, {**variables, "params": params}, ds.test_images, ds.test_labels, mean,
                                      std))
    result[x] = row
    print(f"| {x:g}× | {row[0]:.4f} | {row[1]:.4f} |")
  first = next(iter(result.values()))
  print(f"KEY data_aware_pruning accuracy energy {first[0]:.4f} output-energy {first[1]:.4f}")


if __name__ == "__main__":
  main()
