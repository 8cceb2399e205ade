"""Train-step time of dense vs SVD (full rank in each mode, and pruned to 50% / 10% rank), timed alternately.

  python -m benchmarks.step_time [--quick] [--models resnet20,resnet18]
Prints a table and a final line with the key ratio: full-rank SVD (auto) step / dense step.
"""

from __future__ import annotations

import jax

from benchmarks import common
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec
from jaxsvd.training.losses import RegularizerConfig


def main():
  models, batch_size, repeats = common.parse_models(__doc__)
  data = common.batch(batch_size)
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
  rows, key_ratio = [], {}
  variants = [("dense", None, None)] + [(f"svd {m}", SVDSpec(mode=m), None) for m in ("reconstruct", "factored", "auto")]
  variants += [("svd auto 50% rank", SVDSpec(), 0.5), ("svd auto 10% rank", SVDSpec(), 0.1)]
  for name in models:
    runners, macs = {}, {}
    for label, svd, fraction in variants:
      state, model = common.make_state(name, svd, rank_fraction=fraction)
      macs[label] = flops.count(model, (32, 32, 3)).macs
      runners[label] = common.train_runner(state, data, reg if svd is not None else RegularizerConfig())
    times = common.alternate(runners, repeats)
    dense_time = times["dense"]
    for label, t in times.items():
      rows.append({"model": name, "variant": label, "MACs/img": f"{macs[label] / 1e6:.1f}M", "step ms": f"{t * 1e3:.1f}",
                   "vs dense": f"{t / dense_time:.2f}x", "img/s": f"{batch_size / t:.0f}"})
      if label == "svd auto":
        key_ratio[name] = t / dense_time
  print(f"backend={jax.default_backend()} devices={jax.device_count()} batch={batch_size} repeats={repeats} (median)")
  print(common.table(rows, ["model", "variant", "MACs/img", "step ms", "vs dense", "img/s"]))
  print("KEY full-rank SVD (auto) / dense step time: " + ", ".join(f"{m} {r:.2f}x" for m, r in key_ratio.items()))


if __name__ == "__main__":
  main()
