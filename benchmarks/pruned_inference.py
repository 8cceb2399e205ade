"""Inference of dense vs rank-pruned models, as trained and as deployed (BatchNorm folded, autotuned, exported).

  python -m benchmarks.pruned_inference [--quick] [--models resnet20,resnet18] [--fractions 0.5,0.25,0.1]
Per model and rank fraction, timed alternately in one run (median of --repeats, batch --batch):
  dense             the dense model's eval step as the library runs it (autotuned XLA options)
  dense+folded      the dense model with every BatchNorm folded into its conv (``jaxsvd.deploy``), autotuned options
  pruned            the SVD model pruned to the fraction of every layer's rank, eval step autotuned over options and
                    own mode ('auto') vs all-reconstruct: what training's eval and ``load_for_inference`` run today
  pruned+folded     BatchNorm folded, per-layer merged/factored plan and XLA options chosen by timing whole-model
                    calls over the plans 'auto' (quantized MACs), 'merged' and 'measured' (each layer timed alone),
                    each under every inference option set (tuned / inference / default: ``artifact.autotune``)
  artifact          the same, written by ``jaxsvd.deploy.artifact`` (jax.export) and run by its jax-only runner
speedup = dense time / variant time; MACs red. = dense MACs / variant MACs (``flops.count``); the ratio of the two
is the deployment efficiency (1.0: latency falls as fast as MACs). For pruned+folded, XLA's cost analysis of the
compiled program gives the reduction of its flops and of its bytes accessed (memory traffic) against dense+folded:
a static profile of why latency does or does not follow MACs.
"""

from __future__ import annotations

import tempfile

import jax
import jax.numpy as jnp

from benchmarks import common
from jaxsvd import deploy
from jaxsvd.deploy import artifact
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec
from jaxsvd.training import xla_options


def folded_runner(state, model, x, rules):
  """(no-argument runner, 'rule/options' description, folded model, plan, options) of the folded model."""
  folded = deploy.fold(model, state.variables, x, train=False)
  rule, plan, options, predict = artifact.autotune(folded, x, rules)
  return (lambda: predict(x)), f"{rule}/{xla_options.describe(options)}", folded, plan, options


def xla_cost(folded, plan, x) -> dict[str, float]:
  """XLA's own cost model of the folded model's compiled program: {'flops', 'bytes accessed'} per batch (a static
  profile: what the program computes and moves, independent of timing noise)."""
  weights = folded.weights(plan)
  cost = jax.jit(folded.apply).lower(weights, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # a list of one dict in older jax
  return {k: float(cost.get(k, float("nan"))) for k in ("flops", "bytes accessed")}


def logits_check(runner, reference) -> float:
  return float(jnp.max(jnp.abs(runner() - reference)))


def measure_model(model_name, fractions, batch_size, repeats, rules):
  data = common.batch(batch_size)
  x = data["image"]
  dense_state, dense_model = common.make_state(model_name, None)
  dense_macs = flops.count(dense_model, (32, 32, 3)).macs
  dense = common.eval_runner(dense_state, data, "auto")
  dense_folded, dense_choice, dense_fm, dense_plan, _ = folded_runner(dense_state, dense_model, x, ("merged",))
  dense_cost = xla_cost(dense_fm, dense_plan, x)
  reference = dense_model.apply(dense_state.variables, x, train=False)
  worst_diff = logits_check(dense_folded, reference)
  rows, ratio_at = [], {}
  for fraction in fractions:
    state, model = common.make_state(model_name, SVDSpec(dense_last=True), rank_fraction=fraction)
    macs = flops.count(model, (32, 32, 3)).macs
    pruned = common.eval_runner(state, data, "auto")
    folded, choice, folded_model, plan, options = folded_runner(state, model, x, rules)
    cost = xla_cost(folded_model, plan, x)
    with tempfile.TemporaryDirectory() as directory:
      artifact.write(folded_model, plan, directory, options, platforms=("cpu",))
      predict = artifact.load(directory)
      exported = lambda: predict(x)  # noqa: E731
      reference = model.apply(state.variables, x, train=False)
      worst_diff = max(worst_diff, logits_check(folded, reference), logits_check(exported, reference))
      runners = {"dense": dense, "dense+folded": dense_folded, "pruned": pruned, "pruned+folded": folded,
                 "artifact": exported}
      t = common.alternate(runners, repeats)
    if not rows:
      for label, choice_text in (("dense", common.describe(dense)), ("dense+folded", dense_choice)):
        rows.append(row(model_name, label, "-", dense_macs, dense_macs, t, label, choice_text))
    describe = {"pruned": common.describe(pruned), "pruned+folded": choice, "artifact": choice}
    for label in ("pruned", "pruned+folded", "artifact"):
      rows.append(row(model_name, label, f"{fraction:.0%}", dense_macs, macs, t, label, describe[label]))
    rows[-2]["XLA bytes red."] = f"{dense_cost['bytes accessed'] / cost['bytes accessed']:.2f}x"
    rows[-2]["XLA flops red."] = f"{dense_cost['flops'] / cost['flops']:.2f}x"
    ratio_at[fraction] = {k: t["dense"] / t[k] / (dense_macs / macs) for k in ("pruned", "pruned+folded", "artifact")}
    print(common.table(rows[-5 if len(rows) == 5 else -3:], [*rows[0], "XLA flops red.", "XLA bytes red."]),
          flush=True)  # progress
  return rows, ratio_at, worst_diff


def row(model_name, label, fraction, dense_macs, macs, t, key, choice):
  """A table row of variant ``key``: MACs, time, speedup over t['dense'] and speedup ÷ MACs reduction."""
  speedup = t["dense"] / t[key]
  return {"model": model_name, "variant": label, "rank": fraction, "MACs/img": f"{macs / 1e6:.2f}M",
          "MACs red.": f"{dense_macs / macs:.2f}x", "ms/batch": f"{t[key] * 1e3:.1f}", "speedup": f"{speedup:.2f}x",
          "speedup/MACs": f"{speedup / (dense_macs / macs):.2f}", "choice": choice}


def main():
  p = common.parser(__doc__)
  p.add_argument("--models", default="resnet20,resnet18")
  p.add_argument("--fractions", default="0.5,0.25,0.1")
  p.add_argument("--rules", default=",".join(artifact.CANDIDATES), help="candidate plans for pruned+folded")
  args = p.parse_args()
  batch_size, repeats = common.sizes(args)
  models = ["resnet8"] if args.quick else args.models.split(",")
  fractions = [0.25] if args.quick else [float(f) for f in args.fractions.split(",")]
  rows, keys, worst_diff = [], [], 0.0
  for model_name in models:
    model_rows, ratio_at, diff = measure_model(model_name, fractions, batch_size, repeats, args.rules.split(","))
    rows += model_rows
    worst_diff = max(worst_diff, diff)
    for fraction, ratios in ratio_at.items():
      keys.append(f"{model_name}@{fraction:.0%}: pruned {ratios['pruned']:.2f} -> folded {ratios['pruned+folded']:.2f}"
                  f" / artifact {ratios['artifact']:.2f}")
  print(f"backend={jax.default_backend()} batch={batch_size} repeats={repeats} (median, alternated per fraction)")
  print(common.table(rows, [*rows[0], "XLA flops red.", "XLA bytes red."]))
  print(f"max |logits - eval logits| over folded and artifact variants: {worst_diff:.2e}")
  print("KEY speedup / MACs-reduction, " + "; ".join(keys))


if __name__ == "__main__":
  main()
