"""Cost of the regularizers: SVD train step with λo = λs = 0 (terms not traced) vs on.

  python -m benchmarks.regularizer_overhead [--quick] [--model resnet18]
Final line: overhead = (t_on − t_off) / t_on.
"""

from __future__ import annotations

import jax

from benchmarks import common
from jaxsvd.losses import RegularizerConfig
from jaxsvd.models import SVDSpec


def main():
  p = common.parser(__doc__, model="resnet18")
  args = p.parse_args()
  model = common.model_name(args)
  batch_size, repeats = common.sizes(args)
  data = common.batch(batch_size)
  rows = []
  settings = [("off", RegularizerConfig()), ("orthogonality", RegularizerConfig(orthogonality=1.0)),
              ("orth + hoyer", RegularizerConfig(orthogonality=1.0, sparsity=1e-3)),
              ("orth + hoyer_square", RegularizerConfig(orthogonality=1.0, sparsity=1e-3, sparsity_type="hoyer_square"))]
  state, _ = common.make_state(model, SVDSpec())
  # The settings are timed in turn, repeat by repeat, so that the machine's drift hits all alike.
  times = common.alternate({label: common.train_runner(state, data, reg) for label, reg in settings}, repeats)
  for label, _ in settings:
    t = times[label]
    rows.append({"regularizer": label, "step ms": f"{t * 1e3:.1f}",
                 "overhead": f"{100 * (t - times['off']) / t:+.1f}%"})
  print(f"backend={jax.default_backend()} model={model} batch={batch_size} repeats={repeats} (median)")
  print(common.table(rows, ["regularizer", "step ms", "overhead"]))
  full = times["orth + hoyer"]
  print(f"KEY regularizer overhead (orth + hoyer) = {100 * (full - times['off']) / full:.1f}% of step time")


if __name__ == "__main__":
  main()
