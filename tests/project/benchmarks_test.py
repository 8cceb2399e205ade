"""Smoke tests: every benchmark script runs in --quick mode and prints its key line (no timing asserts)."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["factored_layer", "vs_pytorch", "lm_compression"]
# Each of these compiles many programs even in --quick mode (1-7 min on 2 cores); the library code they time is
# tested on its own (parallel, xla_options, losses, streaming, inference tests).
HEAVY = ["pruned_inference", "step_time", "regularizer_overhead", "parallel_scaling", "data_pipeline", "xla_options",
         "run_latency", "rank_multiple", "channel_pruning", "pruning_event", "checkpoint_io",
         "midepoch_checkpoint", "data_aware_pruning", "onnx_inference"]
SCRIPTS = FAST + [pytest.param(name, marks=pytest.mark.slow) for name in HEAVY]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_quick(script):
  if script == "vs_pytorch" and importlib.util.find_spec("torch") is None:
    pytest.skip("torch not installed (pip install -e '.[bench]')")
  proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--quick"], cwd=REPO, capture_output=True,
                        text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "KEY " in proc.stdout.strip().splitlines()[-1]


def _gpu_check_dry_run(tmp_path, *args):
  """``benchmarks/gpu_check.sh --cpu-dry-run ARGS`` with OUT in ``tmp_path``: (markdown report, JSON report)."""
  from tests import helpers
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"), n_train=64, n_test=32)
  env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_DATA": data_dir, "PYTHON": sys.executable}
  proc = subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), "--cpu-dry-run", *args], cwd=REPO,
                        capture_output=True, text=True, env=env, timeout=600, check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "KEY gpu_check OK"
  out = tmp_path / "out"
  return (out / "gpu_check.md").read_text(), json.loads((out / "gpu_check.json").read_text())


def test_gpu_check_cpu_dry_run_writes_the_report(tmp_path):
  """``benchmarks/gpu_check.sh --cpu-dry-run``: every section of the accelerator check at tiny sizes on CPU (about a
  minute on 2 cores: 4 train-step compiles and a demo run), in the default run so the script cannot rot."""
  report, raw = _gpu_check_dry_run(tmp_path)
  for row in ("| resnet8 | dense | float32 |", "| resnet8 | svd 10% | bfloat16 |", "| resnet8 | pruned bf16 | 50% |",
              "| bfloat16 |", "## tests (pytest -m gpu)"):  # every table: step time, inference, demo, tests
    assert row in report, report
  assert raw["sections"]["tests (pytest -m gpu)"]["raw"]["counts"]["collected"] >= 10
  assert set(raw["sections"]["train step: dense vs SVD, float32 vs bfloat16"]["raw"]["resnet8"]["seconds"]) == {
      f"{v}/{d}" for v in ("dense", "svd 10%") for d in ("float32", "bfloat16")}
