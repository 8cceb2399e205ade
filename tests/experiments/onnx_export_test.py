"""From a finished run to ONNX Runtime: ``experiments.export --format=onnx`` writes model.onnx + onnx_runner.py whose
accuracy on raw uint8 test images is the jax artifact's (logits within 1e-3), ``experiments.predict --source=onnx``
ranks classes as the artifact does, and every failure is one line."""

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from experiments import predict
from experiments.run import loop
from jaxsvd import data
from jaxsvd.data.datasets import FASHION_MNIST_DIRS
from jaxsvd.deploy import artifact
from jaxsvd.deploy.onnx import model as onnx_model
from jaxsvd.deploy.onnx import quantize
from jaxsvd.deploy.onnx import runner as onnx_runner
from jaxsvd.version import __version__
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def exported_run(root, data_dir, n_test):
  """A tiny run on ``data_dir`` exported in both formats; (workdir, test images, test labels)."""
  workdir = str(root / "run")
  loop.run(helpers.tiny_config(data_dir, num_epochs=2, **{"pruning.start": 1}), workdir)
  proc = subprocess.run([sys.executable, "-m", "experiments.export", f"--workdir={workdir}", "--format=all",
                         "--batch=8", "--rules=merged,measured", "--platforms=cpu"], cwd=REPO, capture_output=True,
                        text=True, timeout=900, env=ENV)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "ONNX model: " in proc.stdout and "deploy artifact: " in proc.stdout
  ds = data.load_dataset("fashion_mnist", data_dir)
  return workdir, ds.test_images[:n_test], ds.test_labels[:n_test]


def same_accuracy_as_the_artifact(workdir, images, labels):
  """(ORT accuracy, artifact accuracy, max |logit difference|) on raw uint8 ``images``."""
  deploy_dir = os.path.join(workdir, "deploy")
  ort_logits = np.concatenate([onnx_runner.load(deploy_dir)(images[i:i + 500]) for i in range(0, len(images), 500)])
  apply = artifact.load(deploy_dir)
  jax_logits = np.concatenate([np.asarray(apply(images[i:i + 500])) for i in range(0, len(images), 500)])
  accuracy = [float(np.mean(np.argmax(z, -1) == labels)) for z in (ort_logits, jax_logits)]
  return accuracy[0], accuracy[1], float(np.max(np.abs(ort_logits - jax_logits)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("onnx_export")
  return exported_run(root, helpers.write_fashion_mnist(str(root / "data"), n_train=192, n_test=48), 48)


def test_export_writes_the_model_its_runner_and_metadata(run):
  workdir, _, _ = run
  deploy_dir = os.path.join(workdir, "deploy")
  assert {"model.onnx", "onnx_runner.py", "meta.json"} <= set(os.listdir(deploy_dir))
  meta = onnx_model.metadata(onnx.load(os.path.join(deploy_dir, "model.onnx")))
  jax_meta = artifact.read_meta(deploy_dir)
  assert meta["input"] == jax_meta["input"] and meta["class_names"] == jax_meta["input"]["class_names"]
  assert meta["checkpoint_step"] == jax_meta["checkpoint_step"] and meta["jaxsvd_version"] == __version__
  assert meta["macs_model"] == jax_meta["macs_model"] and meta["macs_executed"] > 0
  assert meta["plan_rule"] in ("merged", "measured") and meta["max_abs_diff_vs_eval"] < 1e-4


def test_onnx_runtime_gives_the_artifacts_accuracy_on_raw_uint8_images(run):
  ort_accuracy, jax_accuracy, diff = same_accuracy_as_the_artifact(*run)
  assert ort_accuracy == pytest.approx(jax_accuracy, abs=0.002) and diff < 1e-3


@pytest.mark.slow
def test_real_fashion_mnist_2000_images(tmp_path):
  """The acceptance check on the real data: 2,000 raw uint8 test images, ORT vs the jax artifact."""
  found = [d for d in FASHION_MNIST_DIRS if os.path.isdir(d)]
  if not found:
    pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
  ort_accuracy, jax_accuracy, diff = same_accuracy_as_the_artifact(*exported_run(tmp_path, found[0], 2000))
  assert ort_accuracy == pytest.approx(jax_accuracy, abs=0.002) and diff < 1e-3


def test_int8_static_quantization_calibrated_on_images_as_stored(run, tmp_path):
  workdir, images, labels = run
  deploy_dir = os.path.join(workdir, "deploy")
  train = data.load_dataset("fashion_mnist", os.path.join(os.path.dirname(workdir), "data")).train_images[:64]
  out = quantize.quantize(os.path.join(deploy_dir, "model.onnx"), str(tmp_path / "int8.onnx"), train)
  int8 = onnx.load(out)
  assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in int8.graph.node}
  meta = onnx_model.metadata(int8)
  assert meta["quantization"]["weights"] == "int8" and meta["input"] == artifact.read_meta(deploy_dir)["input"]
  fp32, q = onnx_runner.load(deploy_dir)(images), onnx_runner.load(out)(images)
  assert np.max(np.abs(q - fp32)) < 0.1 * np.max(np.abs(fp32))  # int8 rounding, not a different function
  with pytest.raises(ValueError, match="at least one calibration image"):
    quantize.quantize(os.path.join(deploy_dir, "model.onnx"), str(tmp_path / "x.onnx"), train[:0])


def test_predict_with_onnx_ranks_as_the_artifact(run, tmp_path):
  workdir, images, _ = run
  np.save(tmp_path / "batch.npy", images[:6])
  by_source = {s: predict.predict(workdir, [str(tmp_path / "batch.npy")], s, top_k=2, batch=4)
               for s in ("onnx", "artifact")}
  assert [r["top"][0]["index"] for r in by_source["onnx"]] == [r["top"][0]["index"] for r in by_source["artifact"]]
  for a, b in zip(by_source["onnx"], by_source["artifact"]):
    assert a["file"] == b["file"] and a["top"][0]["class"] == b["top"][0]["class"]
    assert a["top"][0]["probability"] == pytest.approx(b["top"][0]["probability"], abs=1e-4)


def test_onnx_errors_are_one_line(run, tmp_path):
  workdir, images, _ = run
  np.save(tmp_path / "x.npy", images[:2])
  cases = [("experiments.export", [f"--workdir={tmp_path / 'nope'}", "--format=onnx"], "error: no checkpoint at"),
           ("experiments.export", [f"--workdir={workdir}", "--format=tflite"], "error: "),
           ("experiments.predict", [f"--workdir={workdir}", "--source=onnx", f"--artifact={tmp_path}",
                                    str(tmp_path / "x.npy")], f"error: --source=onnx: no model.onnx in {tmp_path}")]
  for module, args, expected in cases:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=ENV)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len([line for line in lines if line.startswith("error:")]) == 1 and lines[-1].startswith(expected), \
        proc.stderr[-2000:]
