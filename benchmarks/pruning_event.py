"""Cost of one online pruning event (prune + optimizer-state surgery + recompile) in train steps.

  python -m benchmarks.pruning_event [--quick] [--model resnet20]
"""

from __future__ import annotations

import time

import jax

from benchmarks import common
from jaxsvd import pruning
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.recompile import CountingJit
from jaxsvd.training.train_state import train_step


def main():
  p = common.parser(__doc__, model="resnet20")
  args = p.parse_args()
  model_name = common.model_name(args)
  batch_size, repeats = common.sizes(args)
  data = common.batch(batch_size)
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
  step = CountingJit(train_step, static_argnums=(2,), donate_argnums=(0,))
  holder = {"state": common.make_state(model_name, SVDSpec())[0]}

  def once():
    holder["state"], metrics = step(holder["state"], data, reg)
    return metrics

  t_step = common.median_time(once, repeats)
  rows = []
  for policy in ("reinit", "slice"):
    state = holder["state"]
    common.block(state)
    traces = step.traces
    t0 = time.perf_counter()
    new_params, new_ranks, report = pruning.prune(state.params, pruning.Strategy("ratio", reduce_by=0.3))
    model = build_model(model_name, 10, SVDSpec(), ranks=new_ranks)
    new_state = common.block(pruning.opt_state.update_state(state, new_params, model.apply, report, policy))
    t1 = time.perf_counter()
    first_state, metrics = step(new_state, data, reg)
    common.block(metrics)
    t2 = time.perf_counter()
    holder["state"] = first_state
    t_new = common.median_time(once, repeats)
    compile_s = (t2 - t1) - t_new
    rows.append({"policy": policy, "prune+surgery ms": f"{(t1 - t0) * 1e3:.0f}", "first step s": f"{t2 - t1:.2f}",
                 "compile s (first − steady)": f"{compile_s:.2f}", "new compiles": step.traces - traces,
                 "event / step": f"{(t2 - t0) / t_step:.1f}", "surgery / step": f"{(t1 - t0) / t_step:.2f}"})
  print(f"backend={jax.default_backend()} model={model_name} batch={batch_size} step={t_step * 1e3:.0f} ms (median)")
  print(common.table(rows, list(rows[0])))
  print(f"KEY pruning event (prune + surgery + recompile + first step) = {rows[0]['event / step']} train steps; "
        f"excluding compile = {rows[0]['surgery / step']} steps")


if __name__ == "__main__":
  main()
