"""An svdified NNX model with partitioned kernels restores straight onto a mesh, of the same or another shape, with
Auto or Explicit axes, in a process with 4 forced CPU devices (``tests/nnx_mesh_worker.py``)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
def test_restore_onto_a_mesh_of_any_shape(tmp_path, axis_type):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  proc = subprocess.run([sys.executable, "-m", "tests.nnx_mesh_worker", str(tmp_path / "ckpt"), axis_type], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  for shape in ("1x4", "2x2"):
    assert out[shape]["diff"] < 1e-5, out
    factors = out[shape]["factors"]
    assert factors["up.U"] == [["model", "None"], 4]  # U's rows: the kernel's output axis; the rank replicated
    assert factors["up.V"] == [["None", "None"], 4] and factors["up.s"] == [["None"], 4]
    if axis_type == "auto":
      assert factors["down.V"] == [["model", "None"], 4]  # V's rows: the kernel's input axis
