"""Smoke tests: every benchmark script runs in --quick mode and prints its key line (no timing asserts)."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["step_time", "regularizer_overhead", "pruned_inference", "pruning_event", "parallel_scaling", "checkpoint_io",
           "data_pipeline", "vs_pytorch", "xla_options", "channel_pruning", "run_latency"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_quick(script):
  if script == "vs_pytorch" and importlib.util.find_spec("torch") is None:
    pytest.skip("torch not installed (pip install -e '.[bench]')")
  proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--quick"], cwd=REPO, capture_output=True,
                        text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "KEY " in proc.stdout.strip().splitlines()[-1]
