"""One deployed conv layer (BatchNorm folded: conv + bias + ReLU), merged vs factored, under each XLA option set.

  python -m benchmarks.factored_layer [--quick] [--batch 128] [--repeats 7] [--layers 32x16x8,16x32x16,...]
Per layer "HxCxR" (an H×H input with C channels, a 3×3 conv to C channels, stride 1, rank R), timed in turn:
  merged          one 3×3 conv with the rebuilt kernel
  factored/dot    the 3×3 conv to R channels, then the second factor as a dot (what ``jaxsvd.core.factors`` runs)
  factored/1x1    the same with the second factor as a 1×1 conv (what ``jaxsvd.deploy`` runs)
each compiled with every option set of ``xla_options.candidate_options(inference=True)`` (tuned: YNNPACK dots,
reductions and elementwise fusions; inference: without the elementwise fusions; default: XLA's own). This is the
measurement behind the deploy path's choices: see the module doc of ``jaxsvd.training.xla_options``.
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import common
from jaxsvd.core import factors
from jaxsvd.training import xla_options

LAYERS = "32x16x8,16x32x16,8x64x32,32x64x32,16x128x64"  # ResNet-20 stages at 50 % rank; ResNet-18 stages 1, 2


def conv(x, kernel, pad):
  return factors.conv(x, kernel, (1, 1), [(pad, pad)] * 2)


EXECUTIONS = {
    "merged": lambda w, x: jax.nn.relu(conv(x, w["kernel"], 1) + w["bias"]),
    "factored/dot": lambda w, x: jax.nn.relu(conv(x, w["first"], 1) @ w["second"] + w["bias"]),
    "factored/1x1": lambda w, x: jax.nn.relu(conv(conv(x, w["first"], 1), w["second"][None, None], 0) + w["bias"]),
}


def layer_weights(c: int, r: int, rng) -> dict:
  first = rng.normal(size=(3, 3, c, r)).astype(np.float32) / np.sqrt(9 * c)
  second = rng.normal(size=(r, c)).astype(np.float32) / np.sqrt(r)
  return {"kernel": np.einsum("hwcr,rn->hwcn", first, second), "first": first, "second": second,
          "bias": rng.normal(size=c).astype(np.float32)}


def measure(h: int, c: int, r: int, batch: int, repeats: int) -> dict[str, float]:
  rng = np.random.default_rng(0)
  w = jax.tree.map(jax.numpy.asarray, layer_weights(c, r, rng))
  x = jax.numpy.asarray(rng.normal(size=(batch, h, h, c)).astype(np.float32))
  runners, reference = {}, None
  for options in xla_options.candidate_options(inference=True):
    for name, fn in EXECUTIONS.items():
      jitted = jax.jit(fn, compiler_options=options)
      out = jitted(w, x)
      reference = out if reference is None else reference
      np.testing.assert_allclose(out, reference, rtol=2e-3, atol=2e-3)  # every variant computes the same layer
      runners[f"{name} [{xla_options.describe(options)}]"] = (lambda f=jitted: f(w, x))
  return common.alternate(runners, repeats)


def main():
  p = common.parser(__doc__)
  p.add_argument("--layers", default=LAYERS)
  args = p.parse_args()
  batch, repeats = common.sizes(args)
  layers = ["8x16x8"] if args.quick else args.layers.split(",")
  rows, keys = [], []
  for spec in layers:
    h, c, r = (int(v) for v in spec.split("x"))
    t = measure(h, c, r, batch, repeats)
    merged = min(v for k, v in t.items() if k.startswith("merged"))
    macs = (9 * c * c) / (r * (9 * c + c))
    for name, seconds in t.items():
      rows.append({"layer": f"{h}x{h}x{c} r{r}", "execution [options]": name, "ms": f"{seconds * 1e3:.2f}",
                   "speedup vs best merged": f"{merged / seconds:.2f}x", "MACs red.": f"{macs:.2f}x"})
    best = min((k for k in t if not k.startswith("merged")), key=t.get)
    keys.append(f"{spec}: {best} {merged / t[best]:.2f}x at {macs:.2f}x fewer MACs")
  print(f"backend={jax.default_backend()} batch={batch} repeats={repeats} (median, alternated per layer)")
  print(common.table(rows, list(rows[0])))
  print("KEY best factored vs best merged, " + "; ".join(keys))


if __name__ == "__main__":
  main()
