"""Input-pipeline throughput (shuffle + pad-4 crop + flip + normalize, NumPy, vectorized) vs train-step
throughput, side by side. Target: pipeline ≥ 5× the train step's images/s.

  python -m benchmarks.data_pipeline [--quick] [--model resnet20]
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import common
from jaxsvd import data
from jaxsvd.losses import RegularizerConfig
from jaxsvd.models import SVDSpec


def main():
  p = common.parser(__doc__, model="resnet20")
  args = p.parse_args()
  batch_size, repeats = common.sizes(args)
  n = 2048 if args.quick else 10240
  images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = np.zeros(n, np.int32)
  mean, std = data.normalization(images)
  start = time.perf_counter()
  count = sum(len(b["label"]) for b in data.train_batches(images, labels, batch_size, 0, 1, mean, std, True))
  pipeline = count / (time.perf_counter() - start)
  state, _ = common.make_state(common.model_name(args), SVDSpec())
  step_time = common.time_train_steps(state, common.batch(batch_size), RegularizerConfig(1.0, 1e-3), repeats)
  train = batch_size / step_time
  print(f"batch={batch_size} examples={n}")
  print(common.table([{"stage": "input pipeline", "img/s": f"{pipeline:.0f}"},
                      {"stage": f"train step ({common.model_name(args)} SVD)", "img/s": f"{train:.0f}"}],
                     ["stage", "img/s"]))
  print(f"KEY input pipeline / train step throughput = {pipeline / train:.1f}x")


if __name__ == "__main__":
  main()
