"""Cost of the regularizers: SVD train step with λo = λs = 0 (terms not traced) vs on.

  python -m benchmarks.regularizer_overhead [--quick] [--model resnet18] [--every 4]
Each timed call runs ``--every`` steps, so that lazy regularization (every N steps, weight N·λ) is
timed over whole periods. Also printed: the FLOP floor, the Gram GEMMs' MACs (Σ 2·(m + k)·r² per
step: UᵀU and VᵀV forward, A·(AᵀA − I) backward) over the step's conv/dense MACs (3× forward).
Final line: overhead = (t_on − t_off) / t_on for orth + hoyer on every step.
"""

from __future__ import annotations

import jax

from benchmarks import common
from jaxsvd.core.structure import iter_svd_layers
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec
from jaxsvd.training.losses import RegularizerConfig


def gram_macs(params) -> int:
  return sum(2 * (n["U"].shape[0] + n["V"].shape[0]) * n["s"].shape[0] ** 2 for _, n in iter_svd_layers(params))


def main():
  p = common.parser(__doc__, model="resnet18")
  p.add_argument("--every", type=int, default=4, help="period of the lazy-regularization rows")
  args = p.parse_args()
  model_name = common.model_name(args)
  batch_size, repeats = common.sizes(args)
  data = common.batch(batch_size)
  both = dict(orthogonality=1.0, sparsity=1e-3)
  settings = [("off", RegularizerConfig()), ("orthogonality", RegularizerConfig(orthogonality=1.0)),
              ("orth + hoyer", RegularizerConfig(**both)),
              ("orth + hoyer_square", RegularizerConfig(**both, sparsity_type="hoyer_square")),
              (f"orth + hoyer, every {args.every}", RegularizerConfig(**both, every=args.every))]
  state, model = common.make_state(model_name, SVDSpec())
  floor = gram_macs(state.params) / (3 * batch_size * flops.count(model, (32, 32, 3)).macs)
  # The settings are timed in turn, repeat by repeat, so that the machine's drift hits all alike.
  runners = {label: common.train_runner(state, data, reg, steps=args.every) for label, reg in settings}
  times = {k: t / args.every for k, t in common.alternate(runners, repeats).items()}
  rows = [{"regularizer": label, "step ms": f"{times[label] * 1e3:.1f}",
           "overhead": f"{100 * (times[label] - times['off']) / times[label]:+.1f}%"} for label, _ in settings]
  print(f"backend={jax.default_backend()} model={model_name} batch={batch_size} repeats={repeats} (median)")
  print(common.table(rows, ["regularizer", "step ms", "overhead"]))
  print(f"FLOP floor of the every-step orthogonality term: {100 * floor:.1f}% of the step's MACs")
  full = times["orth + hoyer"]
  print(f"KEY regularizer overhead (orth + hoyer) = {100 * (full - times['off']) / full:.1f}% of step time")


if __name__ == "__main__":
  main()
