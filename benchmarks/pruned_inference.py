"""Inference throughput of dense vs pruned SVD models (auto mode, and the merged dense export).

  python -m benchmarks.pruned_inference [--quick] [--model resnet20]
For each rank fraction: FLOPs reduction (dense MACs / pruned MACs), wall-clock speedup, and their
ratio (target ≥ 0.7). Where low rank cannot beat dense, `auto` runs the layer as one conv.
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
  t_dense = common.time_eval(dense_state, data, repeats)
  rows = [{"variant": "dense", "rank": "-", "MACs/img": f"{dense_macs / 1e6:.2f}M", "FLOPs red.": "1.00x",
           "ms/batch": f"{t_dense * 1e3:.1f}", "speedup": "1.00x", "speedup/FLOPs": "-"}]
  worst = None
  template = jax.eval_shape(dense_model.init, jax.random.key(0), data["image"][:1])["params"]
  for fraction in [float(f) for f in args.fractions.split(",")]:
    state, model = common.make_state(model_name, SVDSpec(dense_last=True), rank_fraction=fraction)
    macs = flops.count(model, (32, 32, 3)).macs
    reduction = dense_macs / macs
    t_svd = common.time_eval(state, data, repeats)
    merged = state.replace(params=export.merge(state.params, template), apply_fn=dense_model.apply)
    t_merged = common.time_eval(merged, data, repeats)
    for label, t in (("svd auto", t_svd), ("merged dense", t_merged)):
      speedup = t_dense / t
      rows.append({"variant": label, "rank": f"{fraction:.0%}", "MACs/img": f"{macs / 1e6:.2f}M",
                   "FLOPs red.": f"{reduction:.2f}x", "ms/batch": f"{t * 1e3:.1f}", "speedup": f"{speedup:.2f}x",
                   "speedup/FLOPs": f"{speedup / reduction:.2f}"})
    best = t_dense / min(t_svd, t_merged) / reduction
    worst = best if worst is None else min(worst, best)
  print(f"backend={jax.default_backend()} model={model_name} batch={batch_size} repeats={repeats} (median)")
  print(common.table(rows, ["variant", "rank", "MACs/img", "FLOPs red.", "ms/batch", "speedup", "speedup/FLOPs"]))
  print(f"KEY worst speedup / FLOPs-reduction over rank fractions (best execution per fraction) = {worst:.2f}")


if __name__ == "__main__":
  main()
