"""The accelerator check: one process, one report (``benchmarks/gpu_check.sh`` runs it on a lent GPU machine).

  python -m benchmarks.gpu_check [--cpu-dry-run] [--data-dir DIR] [--out DIR] [--budget-s 420]
                                 [--sections tests,step,inference,demo]
Sections, in this order, each in its own try (a failure is reported, the rest still runs) and skipped once
``--budget-s`` seconds have passed:
  tests       ``pytest -m gpu``: the device-relevant tests (data-parallel pmap/sharding, the deploy artifact lowered
              and run, bf16 training steps) on whatever backend is present (dry run: only collected)
  step time   train step (SGD, the SVD losses on) of dense vs SVD at full, 50 % and 10 % rank, float32 and bfloat16,
              ResNet-20 (batch 128, 32×32) and ResNet-50 (batch 64, 224×224), timed alternately per model
  inference   eval step of ResNet-50 (bf16, batch 64, 224×224) pruned to 50/25/10 % rank vs dense: speedup,
              MACs reduction and their ratio (``pruned_inference.row``; 1.0: latency falls as fast as MACs)
  demo        one epoch of the Fashion-MNIST demo (``experiments/configs/fashion_mnist.py``) in float32 and bf16
              (``--data-dir``: the IDX files; on the GPU machine the carried copy, see benchmarks/README.md)
The report is rewritten after each section: OUT/gpu_check.md (markdown tables) and OUT/gpu_check.json (raw
numbers: seconds, MACs, test counts); OUT is ``--out``, else $OUT, else ./gpu_check_out. ``--cpu-dry-run`` runs
the same code at tiny sizes on CPU (ResNet-8, batch 2, 8×8 images, dense and 10 % rank only, 2 demo steps in bf16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

import jax

from benchmarks import common, pruned_inference
from experiments.configs import fashion_mnist
from experiments.run import loop
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec
from jaxsvd.training.losses import RegularizerConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = {"tests": "tests (pytest -m gpu)", "step": "train step: dense vs SVD, float32 vs bfloat16",
            "inference": "pruned inference (bf16): speedup / MACs reduction", "demo": "Fashion-MNIST demo, one epoch"}
DTYPES = ("float32", "bfloat16")
VARIANTS = (("dense", None, None), ("svd full", SVDSpec(), None), ("svd 50%", SVDSpec(), 0.5),
            ("svd 10%", SVDSpec(), 0.1))


@dataclasses.dataclass(frozen=True)
class Sizes:
  step_models: tuple[tuple[str, int, int], ...]  # (model, batch, image side)
  inference: tuple[str, int, int]
  fractions: tuple[float, ...]
  repeats: int
  demo: dict  # config overrides of the Fashion-MNIST epoch
  variants: tuple = VARIANTS
  demo_dtypes: tuple[str, ...] = DTYPES


FULL = Sizes((("resnet20", 128, 32), ("resnet50", 64, 224)), ("resnet50", 64, 224), (0.5, 0.25, 0.1), 10, {})
# The dry run compiles as few programs as covers every code path (a dense and a pruned SVD variant, both dtypes).
DRY = Sizes((("resnet8", 2, 8),), ("resnet8", 2, 8), (0.5,), 1,
            {"train_subset": 64, "test_subset": 32, "max_steps_per_epoch": 2, "batch_size": 16,
             "eval_batch_size": 32, "final_prune.enabled": False}, (VARIANTS[0], VARIANTS[3]), ("bfloat16",))


def device_tests(dry: bool) -> dict:
  """``pytest -m gpu`` in a subprocess (before this process takes the accelerator): counts and the summary line."""
  cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
  cmd += ["--collect-only"] if dry else []
  env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
  if not dry:  # the default backend (conftest sets cpu only when unset), float32 dots at full precision (no TF32)
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true"  # resume tests: bit-identical
    env.update(JAX_PLATFORMS="", JAX_DEFAULT_MATMUL_PRECISION="highest", XLA_FLAGS=flags.strip())
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False)
  lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
  summary = lines[-1] if lines else proc.stderr.strip()[-300:]
  counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|collected)",
                                              summary.replace("tests collected", "collected"))}
  if dry:
    counts["collected"] = int(re.match(r"(\d+)", summary.split("/")[0]).group(1)) if summary[:1].isdigit() else 0
  return {"returncode": proc.returncode, "summary": summary.strip("= "), "counts": counts,
          "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))][:20]}


def step_times(sizes: Sizes) -> tuple[list[dict], dict]:
  """Train-step times of every (variant, dtype) per model, alternated in one process."""
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
  rows, raw = [], {}
  for name, batch, image in sizes.step_models:
    data = common.batch(batch, image)
    runners, macs = {}, {}
    for label, svd, fraction in sizes.variants:
      for dtype in DTYPES:
        state, model = common.make_state(name, svd, image, fraction, compute_dtype=dtype)
        macs[label] = flops.count(model, (image, image, 3)).macs
        runners[(label, dtype)] = common.train_runner(state, data, reg if svd is not None else RegularizerConfig())
    times = common.alternate(runners, sizes.repeats)
    raw[name] = {"batch": batch, "image": image, "macs": macs,
                 "seconds": {f"{label}/{dtype}": t for (label, dtype), t in times.items()}}
    for (label, dtype), t in times.items():
      rows.append({"model": name, "variant": label, "dtype": dtype, "MACs/img": f"{macs[label] / 1e6:.1f}M",
                   "step ms": f"{t * 1e3:.2f}", "vs dense": f"{t / times[('dense', dtype)]:.2f}x",
                   "bf16 speedup": f"{times[(label, 'float32')] / times[(label, 'bfloat16')]:.2f}x",
                   "img/s": f"{batch / t:.0f}"})
  return rows, raw


def inference(sizes: Sizes) -> tuple[list[dict], dict]:
  """bf16 eval step of the pruned model at each rank fraction vs dense: speedup ÷ MACs reduction."""
  name, batch, image = sizes.inference
  data = common.batch(batch, image)
  state, model = common.make_state(name, None, image, compute_dtype="bfloat16")
  dense_macs = flops.count(model, (image, image, 3)).macs
  runners, macs = {"dense": common.eval_runner(state, data, tuned=False)}, {"dense": dense_macs}
  for fraction in sizes.fractions:
    key = f"{fraction:.0%}"
    state, model = common.make_state(name, SVDSpec(), image, fraction, compute_dtype="bfloat16")
    macs[key] = flops.count(model, (image, image, 3)).macs
    runners[key] = common.eval_runner(state, data, tuned=False)
  times = common.alternate(runners, sizes.repeats)
  rows = [pruned_inference.row(name, "dense bf16" if key == "dense" else "pruned bf16", key, dense_macs, macs[key],
                               times, key, "jit") for key in runners]
  return rows, {"model": name, "batch": batch, "image": image, "macs": macs, "seconds": times}


def demo(sizes: Sizes, data_dir: str, workdir: str) -> tuple[list[dict], dict]:
  """One Fashion-MNIST demo epoch per dtype (wall time includes compiling; test accuracy after the epoch)."""
  rows, raw = [], {}
  for dtype in sizes.demo_dtypes:
    c = fashion_mnist.get_config()
    overrides = {"data_dir": data_dir, "num_epochs": 1, "finetune_epochs": 0, "pruning.enabled": False,
                 "compute_dtype": dtype, "tensorboard": False, "plots": False, "progress_bar": False,
                 "checkpoint.async_save": False, **sizes.demo}
    for key, value in overrides.items():
      *parents, leaf = key.split(".")
      target = c
      for p in parents:
        target = target[p]
      target[leaf] = value
    start = time.perf_counter()
    summary = loop.run(c, os.path.join(workdir, dtype))
    seconds = time.perf_counter() - start
    raw[dtype] = {"seconds": seconds, "test_accuracy": summary["test_accuracy"]}
    rows.append({"dtype": dtype, "epoch s (with compile)": f"{seconds:.1f}",
                 "test accuracy": f"{summary['test_accuracy']:.4f}"})
  return rows, raw


def write_report(out: str, report: dict) -> str:
  """OUT/gpu_check.md (markdown tables) and OUT/gpu_check.json; returns the markdown path."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(report, f, indent=1, default=str)
  env = report["environment"]
  lines = ["# jaxsvd accelerator check", "", " ".join(f"{k}={v}" for k, v in env.items()), ""]
  for title, section in report["sections"].items():
    lines += [f"## {title}", "", f"{section['status']} in {section.get('seconds', 0):.1f} s", ""]
    if section.get("error"):
      lines += ["```", section["error"], "```", ""]
    if section.get("rows"):
      lines += [markdown_table(section["rows"]), ""]
  path = os.path.join(out, "gpu_check.md")
  with open(path, "w") as f:
    f.write("\n".join(lines))
  return path


def markdown_table(rows: list[dict]) -> str:
  columns = list(dict.fromkeys(k for r in rows for k in r))
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  return "\n".join(lines + ["| " + " | ".join(str(r.get(c, "-")) for c in columns) + " |" for r in rows])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on CPU, seconds: the script cannot rot")
  p.add_argument("--data-dir", default=os.environ.get("GPU_CHECK_DATA", "/usr/share/datasets/fashion-mnist"))
  p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
  p.add_argument("--budget-s", type=float, default=420.0, help="sections starting later than this are skipped")
  p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
  args = p.parse_args(argv)
  sizes, start = (DRY if args.cpu_dry_run else FULL), time.perf_counter()
  report = {"environment": {}, "sections": {}}
  workdir = tempfile.mkdtemp(prefix="gpu_check_")
  chosen = args.sections.split(",")
  if unknown := sorted(set(chosen) - set(SECTIONS)):
    p.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
  fns = {"tests": lambda: ([], device_tests(args.cpu_dry_run)), "step": lambda: step_times(sizes),
         "inference": lambda: inference(sizes), "demo": lambda: demo(sizes, args.data_dir, workdir)}
  for title, fn in ((SECTIONS[k], fns[k]) for k in SECTIONS if k in chosen):
    if time.perf_counter() - start > args.budget_s:
      report["sections"][title] = {"status": "SKIPPED (budget)"}
      continue
    began = time.perf_counter()
    try:
      rows, raw = fn()
      report["sections"][title] = {"status": "OK", "rows": rows, "raw": raw}
      if title.startswith("tests"):
        report["sections"][title]["rows"] = [{"summary": raw["summary"], **raw["counts"]}]
        report["sections"][title]["status"] = "OK" if raw["returncode"] == 0 else "FAILED"
    except Exception:  # noqa: BLE001 - report the failure, run the other sections
      report["sections"][title] = {"status": "ERROR", "error": traceback.format_exc(limit=4)[-3000:]}
    report["sections"][title]["seconds"] = time.perf_counter() - began
    report["environment"] = environment(args.cpu_dry_run, time.perf_counter() - start)
    path = write_report(args.out, report)
    print(f"[{time.perf_counter() - start:.0f}s] {title}: {report['sections'][title]['status']}", flush=True)
  with open(path) as f:
    print(f.read())
  failed = [t for t, s in report["sections"].items() if s["status"] in ("ERROR", "FAILED")]
  print("KEY gpu_check " + ("OK" if not failed else "FAILED: " + "; ".join(failed)))
  return 1 if failed else 0


def environment(dry: bool, seconds: float) -> dict:
  device = jax.devices()[0]
  return {"backend": jax.default_backend(), "device": getattr(device, "device_kind", str(device)),
          "devices": jax.device_count(), "jax": jax.__version__, "dry_run": dry, "total_s": round(seconds, 1)}


if __name__ == "__main__":
  sys.exit(main())
