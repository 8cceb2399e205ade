"""Smoke tests: every benchmark script runs in --quick mode and prints its key line (no timing asserts)."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["factored_layer", "vs_pytorch"]
# Each of these compiles many programs even in --quick mode (1-7 min on 2 cores); the library code they time is
# tested on its own (parallel, xla_options, losses, streaming, inference tests).
HEAVY = ["pruned_inference", "step_time", "regularizer_overhead", "parallel_scaling", "data_pipeline", "xla_options",
         "run_latency", "rank_multiple", "channel_pruning", "pruning_event", "checkpoint_io",
         "midepoch_checkpoint"]
SCRIPTS = FAST + [pytest.param(name, marks=pytest.mark.slow) for name in HEAVY]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_quick(script):
  if script == "vs_pytorch" and importlib.util.find_spec("torch") is None:
    pytest.skip("torch not installed (pip install -e '.[bench]')")
  proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--quick"], cwd=REPO, capture_output=True,
                        text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "KEY " in proc.stdout.strip().splitlines()[-1]
