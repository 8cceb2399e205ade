"""Step time with XLA's default compiler options vs jaxsvd's tuned ones (``jaxsvd.training.xla_options``), side by side.

  python -m benchmarks.xla_options [--quick] [--models resnet20,resnet18]
Each variant is compiled twice (defaults / tuned) and the two are timed alternately in one process.
The final line gives tuned / default train-step time of the full-rank SVD (auto) model.
"""

from __future__ import annotations

import jax

from benchmarks import common
from jaxsvd.models import SVDSpec
from jaxsvd.training import xla_options
from jaxsvd.training.losses import RegularizerConfig

VARIANTS = (("dense", None, None), ("svd auto", SVDSpec(), None), ("svd auto 50% rank", SVDSpec(), 0.5),
            ("svd auto 10% rank", SVDSpec(), 0.1))


def main():
  models, batch_size, repeats = common.parse_models(__doc__)
  data = common.batch(batch_size)
  rows, key = [], {}
  for name in models:
    for label, svd, fraction in VARIANTS:
      state, _ = common.make_state(name, svd, rank_fraction=fraction)
      reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3) if svd is not None else RegularizerConfig()
      # Train and eval are timed in separate alternations: an eval right after a train step runs slower
      # (by up to 1.3x with the default options), which is not how eval runs (batch after batch).
      t = {**common.alternate({("train", tuned): common.train_runner(state, data, reg, tuned) for tuned in (False, True)}, repeats),
           **common.alternate({("eval", tuned): common.eval_runner(state, data, tuned) for tuned in (False, True)}, repeats)}
      for kind in ("train", "eval"):
        ratio = t[kind, True] / t[kind, False]
        rows.append({"model": name, "variant": label, "step": kind, "default ms": f"{t[kind, False] * 1e3:.1f}",
                     "tuned ms": f"{t[kind, True] * 1e3:.1f}", "tuned/default": f"{ratio:.2f}x"})
        if (label, kind) == ("svd auto", "train"):
          key[name] = ratio
  print(f"backend={jax.default_backend()} jax={jax.__version__} batch={batch_size} repeats={repeats} (median, alternated)")
  print(f"tuned options: {xla_options.tuned_options()}")
  print(common.table(rows, list(rows[0])))
  print("KEY tuned / default XLA options, SVD (auto) train step: " + ", ".join(f"{m} {r:.2f}x" for m, r in key.items()))


if __name__ == "__main__":
  main()
