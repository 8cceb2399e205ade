"""What a mid-epoch checkpoint (``checkpoint.every_steps``) costs the training loop, next to a train step.

  python -m benchmarks.midepoch_checkpoint [--quick]
For ResNet-20 (CIFAR, 10 classes) and ResNet-50 (ImageNet, 1000 classes) in SVD form at full rank with SGD-momentum
state: the time ``checkpoint.save`` blocks the loop with async saves (device → host copy, then the write runs in the
background), the time until that save is committed, and a synchronous save (what a stop on SIGTERM waits for); and,
measured in the same run, one ResNet-20 train step (batch 128) to express the blocking time in steps.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import jax
import jax.numpy as jnp

from benchmarks import common
from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training import optim
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.train_state import TrainState

MODELS = {"resnet20": (32, 10), "resnet50": (224, 1000)}
QUICK_MODELS = {"resnet8": (32, 10)}


def make_state(name: str) -> tuple[TrainState, Architecture]:
  image, classes = {**MODELS, **QUICK_MODELS}[name]
  model = build_model(name, classes, SVDSpec())
  variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, image, image, 3)))
  tx = optim.make_optimizer(dict(optimizer="sgd", learning_rate=0.1, momentum=0.9), variables["params"], 100, 1)
  ranks = read_ranks(variables["params"])
  return TrainState.create(model.apply, variables, tx), Architecture(name, classes, (image, image, 3), SVDSpec(),
                                                                      ranks, ranks)


def save_times(state, architecture, repeats: int, async_save: bool) -> tuple[float, float]:
  """(median seconds until ``save`` returns, median seconds until the step is committed) over ``repeats`` saves."""
  blocked, committed = [], []
  with tempfile.TemporaryDirectory() as tmp:
    mngr = checkpoint.manager(tmp, max_to_keep=2, async_save=async_save)
    for i in range(repeats + 1):  # the first save pays one-time setup
      state = state.replace(step=jnp.int32(i + 1))
      start = time.perf_counter()
      checkpoint.save(mngr, state, jax.random.key(0), architecture, {"epoch": 0, "epoch_progress": {}})
      returned = time.perf_counter()
      checkpoint.wait(mngr)
      if i:
        blocked.append(returned - start)
        committed.append(time.perf_counter() - start)
    mngr.close()
  return statistics.median(blocked), statistics.median(committed)


def main():
  args = common.parser(__doc__).parse_args()
  repeats = 2 if args.quick else 5
  step = common.median_time(common.train_runner(common.make_state("resnet20", SVDSpec())[0], common.batch(128),
                                                RegularizerConfig()), repeats)
  rows = []
  for name in QUICK_MODELS if args.quick else MODELS:
    state, architecture = make_state(name)
    blocked, committed = save_times(state, architecture, repeats, async_save=True)
    _, sync = save_times(state, architecture, repeats, async_save=False)
    size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves((state.params, state.opt_state)))
    rows.append({"model": name, "params+opt MiB": f"{size / 2**20:.1f}",
                 "async: loop blocked ms": f"{blocked * 1e3:.0f}",
                 "async: committed ms": f"{committed * 1e3:.0f}", "sync save ms": f"{sync * 1e3:.0f}",
                 "blocked / R20 step": f"{blocked / step:.2f}"})
  print(f"ResNet-20 train step (batch 128, SVD full rank): {step * 1e3:.0f} ms")
  print(common.table(rows, list(rows[0])))
  last = rows[-1]
  print(f"KEY {last['model']} mid-epoch checkpoint: the loop waits {last['async: loop blocked ms']} ms (async), "
        f"{last['sync save ms']} ms synchronously (a stop on SIGTERM)")


if __name__ == "__main__":
  main()
