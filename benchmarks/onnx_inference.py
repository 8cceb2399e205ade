"""Deployment on CPU: the ONNX model run by ONNX Runtime vs the ``jax.export`` artifact, same checkpoint, one process.

  python -m benchmarks.onnx_inference [--quick] [--models resnet20,resnet18] [--fractions 0.5,0.25,0.1]
      [--batches resnet20=128,resnet18=32] [--threads 2] [--rules auto,merged,measured]
Per model, dense and at each rank fraction (every SVD layer pruned to that fraction of its rank), BatchNorm folded:
  artifact   ``artifact.autotune`` (plan and XLA options timed on whole-model calls), written with ``artifact.write``
             and run by its jax-only runner
  onnx       ``jaxsvd.deploy.onnx.autotune`` (plan measured in ONNX Runtime: 'auto', 'merged', each layer timed
             alone), run by ``onnx_runner`` with ``--threads`` intra-op threads
The two are timed alternately (median of --repeats) at the model's batch size and at batch 1 (latency). Both take the
same normalized float32 batch here (the contract's uint8 → float step is a few elementwise ops either way).
Columns: ms per batch, ORT's speedup over the artifact, and for each runtime its speedup over its own dense model
divided by the MACs reduction (1.0: latency falls as fast as MACs). The logits of both are checked against flax's
eval of the unfolded model.
"""

from __future__ import annotations

import tempfile

import numpy as np

from benchmarks import common
from jaxsvd import deploy
from jaxsvd.deploy import artifact
from jaxsvd.deploy.onnx import runner as onnx_runner
from jaxsvd.deploy.onnx import tune
from jaxsvd.deploy.onnx.model import save
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec


def measure(model_name, fraction, batch_size, repeats, threads, rules, directory):
  """{'macs', 'artifact', 'onnx', 'artifact@1', 'onnx@1' (seconds), 'plan', 'diff'} of one model at one rank."""
  svd = None if fraction is None else SVDSpec(dense_last=True)
  state, model = common.make_state(model_name, svd, rank_fraction=fraction)
  x = np.asarray(common.batch(batch_size)["image"])
  reference = np.asarray(model.apply(state.variables, x, train=False))
  folded = deploy.fold(model, state.variables, x, train=False)
  _, plan, options, _ = artifact.autotune(folded, x, rules)
  artifact.write(folded, plan, directory, options, platforms=("cpu",))
  jax_predict = artifact.load(directory)
  rule, ort_plan, model_proto = tune.autotune(folded, None, x, rules, threads=threads)
  ort_predict = onnx_runner.load(save(model_proto, directory), threads)
  diff = max(float(np.max(np.abs(np.asarray(f(x)) - reference))) for f in (jax_predict, ort_predict))
  t = common.alternate({"artifact": lambda: jax_predict(x), "onnx": lambda: ort_predict(x),
                        "artifact@1": lambda: jax_predict(x[:1]), "onnx@1": lambda: ort_predict(x[:1])}, repeats)
  factored = sum(v == "factored" for v in ort_plan.values())
  return {**t, "macs": flops.count(model, (32, 32, 3)).macs, "diff": diff,
          "plan": f"{rule}: {factored}/{len(ort_plan)} factored"}


def rows_of(model_name, results, batch_size):
  """Table rows: per rank, both runtimes' ms per batch and at batch 1, ORT's speedup, speedup ÷ MACs reduction."""
  dense = results[None]
  rows = []
  for fraction, r in results.items():
    red = dense["macs"] / r["macs"]
    rows.append({"model": model_name, "batch": batch_size, "rank": "dense" if fraction is None else f"{fraction:.0%}",
                 "MACs/img": f"{r['macs'] / 1e6:.1f}M", "artifact ms": f"{r['artifact'] * 1e3:.1f}",
                 "ORT ms": f"{r['onnx'] * 1e3:.1f}", "ORT speedup": f"{r['artifact'] / r['onnx']:.2f}x",
                 "speedup/MACs artifact": f"{dense['artifact'] / r['artifact'] / red:.2f}",
                 "speedup/MACs ORT": f"{dense['onnx'] / r['onnx'] / red:.2f}",
                 "b1 artifact ms": f"{r['artifact@1'] * 1e3:.2f}", "b1 ORT ms": f"{r['onnx@1'] * 1e3:.2f}",
                 "b1 speedup": f"{r['artifact@1'] / r['onnx@1']:.2f}x", "ORT plan": r["plan"]})
  return rows


def main():
  p = common.parser(__doc__)
  p.add_argument("--models", default="resnet20,resnet18")
  p.add_argument("--fractions", default="0.5,0.25,0.1")
  p.add_argument("--batches", default="resnet20=128,resnet18=32", help="batch size per model (default --batch)")
  p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
  p.add_argument("--rules", default=",".join(artifact.CANDIDATES), help="candidate plans for both runtimes")
  args = p.parse_args()
  _, repeats = common.sizes(args)
  models = ["resnet8"] if args.quick else args.models.split(",")
  fractions = [None] + ([0.25] if args.quick else [float(f) for f in args.fractions.split(",")])
  batches = dict(item.split("=") for item in args.batches.split(",") if item)
  rows, keys, worst = [], [], 0.0
  for name in models:
    batch_size = 8 if args.quick else int(batches.get(name, args.batch))
    results = {}
    for fraction in fractions:
      with tempfile.TemporaryDirectory() as directory:
        results[fraction] = measure(name, fraction, batch_size, repeats, args.threads, args.rules.split(","),
                                    directory)
      worst = max(worst, results[fraction]["diff"])
      print(common.table(rows_of(name, results, batch_size)[-1:], list(rows_of(name, results, batch_size)[0])),
            flush=True)  # progress
    rows += rows_of(name, results, batch_size)
    keys += [f"{name}@{r['rank']}: ORT {r['ORT speedup']} (b1 {r['b1 speedup']})" for r in rows[-len(fractions):]]
  print(f"ORT threads={args.threads} repeats={repeats} (median, alternated)")
  print(common.table(rows, list(rows[0])))
  print(f"max |logits - flax eval logits| over both runtimes: {worst:.2e}")
  print("KEY ORT vs artifact, " + "; ".join(keys))


if __name__ == "__main__":
  main()
