"""Checkpoint size and save/restore time for a ResNet-20 at full rank and pruned (Adam state included).

  python -m benchmarks.checkpoint_io [--quick]
Restore = read the JSON architecture record → rebuild the model at the saved ranks → abstract targets → arrays.
"""

from __future__ import annotations

import os
import tempfile
import time

import jax

from benchmarks import common
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.models import SVDSpec


def dir_size(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def main():
  p = common.parser(__doc__, model="resnet20")
  args = p.parse_args()
  model_name = common.model_name(args)
  rows = []
  for label, fraction in (("full rank", None), ("pruned 50%", 0.5), ("pruned 10%", 0.1)):
    state, _ = common.make_state(model_name, SVDSpec(), rank_fraction=fraction, optimizer="adam")
    with tempfile.TemporaryDirectory() as tmp:
      mngr = checkpoint.manager(tmp, async_save=False)
      ranks = common.read_ranks(state.params)
      architecture = Architecture(model_name, 10, (32, 32, 3), SVDSpec(), ranks, ranks)
      start = time.perf_counter()
      checkpoint.save(mngr, state, jax.random.key(0), architecture, run={"epoch": 1})
      mngr.wait_until_finished()
      t_save = time.perf_counter() - start
      start = time.perf_counter()
      restored = checkpoint.restore(tmp)
      jax.block_until_ready(restored.variables)
      t_restore = time.perf_counter() - start
      size = dir_size(os.path.join(tmp, str(restored.step)))
      mngr.close()
    rows.append({"checkpoint": label, "total rank": common.total_rank(state), "size KiB": f"{size / 1024:.0f}",
                 "save ms": f"{t_save * 1e3:.0f}", "restore ms": f"{t_restore * 1e3:.0f}"})
  print(f"model={model_name} (params + batch stats + Adam moments + step + rng + JSON architecture record)")
  print(common.table(rows, list(rows[0])))
  print(f"KEY pruned-50% checkpoint: {rows[1]['size KiB']} KiB, save {rows[1]['save ms']} ms, "
        f"restore (fresh model from the record) {rows[1]['restore ms']} ms")


if __name__ == "__main__":
  main()
