"""Inference speedup of channel pruning (physically narrower models) vs rank pruning, at the same MACs reduction.

  python -m benchmarks.channel_pruning [--quick] [--models resnet20,vgg11] [--budgets 0.5,0.25]
For each MACs budget b (fraction of the dense model's MACs), three models with MACs ≤ b × dense, timed
alternately with the dense model in one run (eval step as the library runs it, ``xla_options.autotuned_jit``):
  narrow (global |γ|)   widths from one global threshold on per-channel scores (what network slimming and
                        pruning from scratch produce; bisected to the budget by ``from_scratch.widths_for_budget``)
  narrow (global |γ|, ×8)  the same with every width rounded up to a multiple of 8 (``channel_multiple``), the
                        threshold bisected again so the rounded model meets the budget
  narrow (uniform)      every channel group scaled by the same factor (bisected to the budget)
  svd rank              every SVD layer pruned to the same rank fraction (bisected to the budget)
The key number is speedup ÷ MACs reduction (1.0: latency falls as fast as MACs). With ``--folded`` every model is
also timed as deployed (``jaxsvd.deploy``: BatchNorm folded; plan and XLA options autotuned, as
``benchmarks.pruned_inference``'s 'pruned+folded'); a folded variant's speedup is against the folded dense model
(like with like), an unfolded one's against the dense eval step.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from benchmarks import common
from benchmarks.pruned_inference import folded_runner
from jaxsvd import checkpoint
from jaxsvd.core.structure import norm_widths
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import from_scratch


def _bisect(macs_of, limit: float, lo: float = 0.0, hi: float = 1.0, steps: int = 14) -> float:
  """The largest fraction f in (lo, hi] with macs_of(f) ≤ limit (macs_of increasing in f)."""
  for _ in range(steps):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if macs_of(mid) <= limit else (lo, mid)
  return lo


def _narrow_variants(name: str, budget: float, dense_macs: int) -> dict[str, dict]:
  model = build_model(name, 10, None)
  shapes = checkpoint.abstract_variables(model, (32, 32, 3))
  full = {g.conv: norm_widths(shapes["params"])[g.norm] for g in model.channel_groups()}
  macs_of = lambda widths: flops.count(build_model(name, 10, None, widths=widths), (32, 32, 3)).macs  # noqa: E731
  rng = np.random.default_rng(0)
  scores = {conv: np.abs(rng.normal(size=w)) * rng.uniform(0.5, 1.5) for conv, w in full.items()}
  uniform = lambda f: {c: max(1, math.floor(w * f)) for c, w in full.items()}  # noqa: E731
  f = _bisect(lambda f: macs_of(uniform(f)), budget * dense_macs)
  variants = {"narrow (global |γ|)": from_scratch.widths_for_budget(scores, macs_of, budget)}
  try:  # at small budgets 8 channels per group may already be too many (the residual stream is not narrowed)
    variants["narrow (global |γ|, ×8)"] = from_scratch.widths_for_budget(scores, macs_of, budget, multiple=8)
  except ValueError as err:
    print(f"{name}@{budget:.0%}: no ×8 variant ({err})")
  return {**variants, "narrow (uniform)": uniform(f)}


def _rank_state(name: str, budget: float, dense_macs: int):
  macs_at = lambda f: flops.count(common.make_state(name, SVDSpec(), rank_fraction=max(f, 1e-3))[1],  # noqa: E731
                                  (32, 32, 3)).macs
  f = _bisect(macs_at, budget * dense_macs, steps=8)
  return common.make_state(name, SVDSpec(), rank_fraction=max(f, 1e-3)), f


def main():
  p = common.parser(__doc__)
  p.add_argument("--models", default="resnet20,vgg11")
  p.add_argument("--budgets", default="0.5,0.25")
  p.add_argument("--folded", action="store_true", help="also time every model with BatchNorm folded (deployed)")
  args = p.parse_args()
  names = ["resnet8"] if args.quick else args.models.split(",")
  budgets = [0.5] if args.quick else [float(b) for b in args.budgets.split(",")]
  batch_size, repeats = common.sizes(args)
  data = common.batch(batch_size)
  rows = []
  for name in names:
    dense_state, dense_model = common.make_state(name, None)
    dense_macs = flops.count(dense_model, (32, 32, 3)).macs
    for budget in budgets:
      states = {label: common.make_state(name, None, widths=widths)
                for label, widths in _narrow_variants(name, budget, dense_macs).items()}
      (rank_state, _), fraction = _rank_state(name, budget, dense_macs)
      states[f"svd rank {fraction:.0%}"] = (rank_state, build_model(name, 10, SVDSpec(),
                                                                    ranks=common.read_ranks(rank_state.params)))
      runners = {"dense": common.eval_runner(dense_state, data, "auto"),
                 **{label: common.eval_runner(state, data, "auto") for label, (state, _) in states.items()}}
      if args.folded:
        states = {**states, **{f"{label} +folded": (state, model) for label, (state, model) in
                               [("dense", (dense_state, dense_model)), *states.items()]}}
        runners.update({label: folded_runner(state, model, data["image"], ("auto", "merged", "measured"))[0]
                        for label, (state, model) in states.items() if label.endswith("+folded")})
      t = common.alternate(runners, repeats)
      for label, (state, model) in states.items():
        macs = flops.count(model, (32, 32, 3)).macs
        base = "dense +folded" if label.endswith("+folded") else "dense"  # like with like: folded vs folded
        speedup, reduction = t[base] / t[label], dense_macs / macs
        rows.append({"model": name, "budget": f"{budget:.0%}", "variant": label, "MACs red.": f"{reduction:.2f}x",
                     "ms/batch": f"{t[label] * 1e3:.1f}", "dense ms": f"{t[base] * 1e3:.1f}",
                     "speedup": f"{speedup:.2f}x", "speedup/MACs": f"{speedup / reduction:.2f}"})
  print(f"backend={jax.default_backend()} batch={batch_size} repeats={repeats} (median, alternated)")
  print(common.table(rows, list(rows[0])))
  short = lambda v: (v.split(" (")[0].split(" ")[0] + (" x8" if "×8" in v else "")  # noqa: E731
                     + (" folded" if v.endswith("+folded") else ""))
  key = {f"{r['model']}@{r['budget']} {short(r['variant'])}": r["speedup/MACs"] for r in rows
         if "uniform" not in r["variant"]}
  print("KEY speedup/MACs-reduction: " + ", ".join(f"{k} {v}" for k, v in key.items()))


if __name__ == "__main__":
  main()
