"""SVD training of sharded transformers end to end: a linen decoder-only LM and an NNX ViT, their kernels
named with logical axes and sharded by FSDP-style rules over a 2 (data) × 2 (model) mesh of forced CPU devices, must
equal the same run on one device: loss per step, ranks after the energy prune, restored outputs; the factors keep
the kernels' shardings through the prune (sliced shard by shard, never gathered) and the restore onto a 1 × 4 mesh.
The same LM over 2 processes × 2 devices (JAX CPU collectives): no process can see the other's shards, so a prune or
checkpoint that gathered whole arrays would fail there. Each run is a subprocess (``tests/mesh_e2e_worker.py``)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 420


def _env(devices: int) -> dict:
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _worker(model: str, meshes: str, directory, *distributed: str) -> list[str]:
  return [sys.executable, "-m", "tests.mesh_e2e_worker", model, meshes, str(directory), *distributed]


def _run_one_process(model: str, meshes: str, directory) -> dict:
  proc = subprocess.run(_worker(model, meshes, directory), cwd=ROOT, env=_env(4), capture_output=True, text=True,
                        timeout=TIMEOUT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_two_processes(model: str, directory) -> dict:
  """The 2 × 2 mesh over 2 processes × 2 devices: process 0's JSON line."""
  coordinator = f"localhost:{_free_port()}"
  procs = [subprocess.Popen(_worker(model, "2x2", directory, coordinator, "2", str(i)), cwd=ROOT, env=_env(2),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:
    outputs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for proc, (_, err) in zip(procs, outputs):
    assert proc.returncode == 0, err[-3000:]
  return json.loads(outputs[0][0].strip().splitlines()[-1])["2x2"]


def _check_equal_to_reference(sharded: dict, reference: dict, devices: int) -> None:
  np.testing.assert_allclose(sharded["loss"], reference["loss"], rtol=2e-5)
  assert sharded["ranks"] == reference["ranks"]
  assert min(sharded["ranks"].values()) < 32  # the prune did remove directions
  assert sharded["restored_diff"] < 1e-5 and reference["restored_diff"] < 1e-5
  # Factors sharded like their kernels, before and after the prune, and when restored onto another mesh shape.
  assert sharded["specs_after"] == sharded["specs_before"]
  assert sharded["restored_specs"] == _on_1x4_mesh(sharded["specs_before"])
  assert all(devices_ == devices for _, devices_ in sharded["specs_after"].values())
  sharded_specs = [spec for spec, _ in sharded["specs_after"].values() if spec]
  assert len(sharded_specs) >= len(sharded["specs_after"]) // 2, sharded["specs_after"]
  assert ["model"] in sharded_specs and ["data"] in sharded_specs


def _on_1x4_mesh(specs: dict) -> dict:
  """The specs with 'data' (one device on the (1, 4) restore mesh) left out, as the worker records them there."""
  def drop(spec):
    spec = [None if axis == "data" else axis for axis in spec]
    while spec and spec[-1] is None:
      spec.pop()
    return spec
  return {path: [drop(spec), devices] for path, (spec, devices) in specs.items()}


@pytest.fixture(scope="module")
def lm_runs(tmp_path_factory):
  return _run_one_process("lm", "none,2x2", tmp_path_factory.mktemp("lm"))


def test_linen_lm_on_a_2x2_mesh_equals_the_unsharded_run(lm_runs):
  _check_equal_to_reference(lm_runs["2x2"], lm_runs["none"], devices=4)
  # wi's kernel (embed, mlp) → (data, model): U (its mlp rows) over 'model', V (its embed rows) over 'data'.
  assert lm_runs["2x2"]["specs_decomposed"] == lm_runs["2x2"]["specs_before"]  # decompose of sharded kernels
  assert lm_runs["2x2"]["specs_before"]["block_0/wi/U"] == [["model"], 4]
  assert lm_runs["2x2"]["specs_before"]["block_0/wi/V"] == [["data"], 4]


def test_linen_lm_over_2_processes_x_2_devices_equals_the_unsharded_run(lm_runs, tmp_path):
  _check_equal_to_reference(_run_two_processes("lm", tmp_path), lm_runs["none"], devices=4)


def test_nnx_vit_on_a_2x2_mesh_equals_the_unsharded_run(tmp_path):
  runs = _run_one_process("vit", "none,2x2", tmp_path)
  _check_equal_to_reference(runs["2x2"], runs["none"], devices=4)


@pytest.mark.slow
def test_nnx_vit_over_2_processes_x_2_devices_equals_the_unsharded_run(tmp_path):
  reference = _run_one_process("vit", "none", tmp_path / "one")["none"]
  _check_equal_to_reference(_run_two_processes("vit", tmp_path / "two"), reference, devices=4)


@pytest.mark.slow
def test_linen_lm_on_a_1x4_mesh_equals_the_unsharded_run(tmp_path):
  runs = _run_one_process("lm", "none,1x4", tmp_path)
  _check_equal_to_reference(runs["1x4"], runs["none"], devices=4)
