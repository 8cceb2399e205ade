"""Step time of data-parallel training with 1/2/4 (forced CPU or real) devices at a fixed global batch.

  python -m benchmarks.parallel_scaling [--quick] [--model resnet20] [--devices 1,2,4]
Each device count runs in its own process (XLA_FLAGS=--xla_force_host_platform_device_count=N on CPU),
for parallel = none (1 device), pmap and sharding. On a 2-core CPU this proves the path, not speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks import common

WORKER = """
import json, sys
from benchmarks import common
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training.parallel import DataParallel
kind, n, model_name, batch_size, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
par = DataParallel(kind, n)
state, _ = common.make_state(model_name, SVDSpec())
model = build_model(model_name, 10, SVDSpec(), bn_axis_name=par.bn_axis_name)
state = par.place(state.replace(apply_fn=model.apply))
data = par.shard_batch({k: v.__array__() for k, v in common.batch(batch_size).items()})
reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
holder = {"s": state}
def once():
  holder["s"], m = par.train_step(holder["s"], data, reg)
  return m
print(json.dumps({"t": common.median_time(once, repeats)}))
"""


def measure(kind, n, model, batch_size, repeats) -> float:
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
  out = subprocess.run([sys.executable, "-c", WORKER, kind, str(n), model, str(batch_size), str(repeats)],
                       env=env, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])["t"]


def main():
  p = common.parser(__doc__, model="resnet20")
  p.add_argument("--devices", default="1,2,4")
  args = p.parse_args()
  model = common.model_name(args)
  batch_size, repeats = common.sizes(args)
  base = measure("none", 1, model, batch_size, repeats)
  rows = [{"parallel": "none", "devices": 1, "step ms": f"{base * 1e3:.0f}", "vs 1 device": "1.00x"}]
  for n in [int(d) for d in args.devices.split(",") if int(d) > 1]:
    for kind in ("pmap", "sharding"):
      t = measure(kind, n, model, batch_size, repeats)
      rows.append({"parallel": kind, "devices": n, "step ms": f"{t * 1e3:.0f}", "vs 1 device": f"{t / base:.2f}x"})
  print(f"model={model} global batch={batch_size} repeats={repeats} (median, one process per device count)")
  print(common.table(rows, ["parallel", "devices", "step ms", "vs 1 device"]))
  print("KEY step time vs 1 device: " + ", ".join(f"{r['parallel']}x{r['devices']} {r['vs 1 device']}" for r in rows[1:]))


if __name__ == "__main__":
  main()
