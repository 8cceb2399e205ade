"""Inference throughput of dense vs pruned SVD models (auto mode, and the merged dense export).

  python -m benchmarks.pruned_inference [--quick] [--model resnet20] [--fractions 1.0,0.5,...]
For each rank fraction: FLOPs reduction (dense MACs / pruned MACs), wall-clock speedup, and their
ratio (target ≥ 0.7). Every variant is evaluated as the library does (``xla_options.autotuned_jit``
over tuned/default XLA options and the model's own mode (``auto``) vs all SVD layers as one conv
(``reconstruct``, the dense-equivalent), whichever is faster for that step; the 'choice' column says
which), and the variants of one fraction are timed alternately with the dense model.
"""

from __future__ import annotations

import jax

from benchmarks import common
from jaxsvd import export, flops
from jaxsvd.models import SVDSpec


def main():
  p = common.parser(__doc__, model="resnet20")
  p.add_argument("--fractions", default="1.0,0.5,0.25,0.1,0.05")
  args = p.parse_args()
  model_name = common.model_name(args)
  batch_size, repeats = common.sizes(args)
  data = common.batch(batch_size)
  dense_state, dense_model = common.make_state(model_name, None)
  dense_macs = flops.count(dense_model, (32, 32, 3)).macs
  dense = common.eval_runner(dense_state, data, "auto")
  template = jax.eval_shape(dense_model.init, jax.random.key(0), data["image"][:1])["params"]
  rows, worst = [], None
  for fraction in [float(f) for f in args.fractions.split(",")]:
    state, model = common.make_state(model_name, SVDSpec(dense_last=True), rank_fraction=fraction)
    macs = flops.count(model, (32, 32, 3)).macs
    reduction = dense_macs / macs
    merged = state.replace(params=export.merge(state.params, template), apply_fn=dense_model.apply)
    runners = {"dense": dense, "svd auto": common.eval_runner(state, data, "auto"),
               "merged dense": common.eval_runner(merged, data, "auto")}
    t = common.alternate(runners, repeats)
    if not rows:
      rows.append({"variant": "dense", "rank": "-", "MACs/img": f"{dense_macs / 1e6:.2f}M", "FLOPs red.": "1.00x",
                   "ms/batch": f"{t['dense'] * 1e3:.1f}", "speedup": "1.00x", "speedup/FLOPs": "-",
                   "choice": common.describe(dense)})
    for label in ("svd auto", "merged dense"):
      speedup = t["dense"] / t[label]
      rows.append({"variant": label, "rank": f"{fraction:.0%}", "MACs/img": f"{macs / 1e6:.2f}M",
                   "FLOPs red.": f"{reduction:.2f}x", "ms/batch": f"{t[label] * 1e3:.1f}", "speedup": f"{speedup:.2f}x",
                   "speedup/FLOPs": f"{speedup / reduction:.2f}", "choice": common.describe(runners[label])})
    best = t["dense"] / min(t["svd auto"], t["merged dense"]) / reduction
    worst = best if worst is None else min(worst, best)
  print(f"backend={jax.default_backend()} model={model_name} batch={batch_size} repeats={repeats} (median, alternated)")
  print(common.table(rows, list(rows[0])))
  print(f"KEY worst speedup / FLOPs-reduction over rank fractions (best execution per fraction) = {worst:.2f}")


if __name__ == "__main__":
  main()
