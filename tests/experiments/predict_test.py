"""The user's path from a finished run to predictions on images as stored: the input contract in the record and the
artifact, the runner on raw uint8 images, ``experiments.predict`` on PNG/.npy files, one-line errors."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest
from PIL import Image

from experiments import export, predict
from experiments.run import loop
from jaxsvd import checkpoint, data
from jaxsvd.core.contract import CLASS_NAMES, InputContract
from jaxsvd.deploy import artifact, runner
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A finished tiny Fashion-MNIST run, exported; (workdir, test images, test labels)."""
  root = tmp_path_factory.mktemp("predict")
  data_dir = helpers.write_fashion_mnist(str(root / "data"), n_train=192, n_test=48)
  workdir = str(root / "run")
  loop.run(helpers.tiny_config(data_dir, num_epochs=2, **{"pruning.start": 1}), workdir)
  export.export_run(workdir, batch=8, rules=("merged",), platforms=("cpu",))
  ds = data.load_dataset("fashion_mnist", data_dir)
  return workdir, ds.test_images, ds.test_labels


def _eval_accuracy(workdir):
  return checkpoint.restore(os.path.join(workdir, "checkpoints")).meta["history"][-1]["test_accuracy"]


def test_record_and_artifact_carry_the_training_normalization(run):
  workdir, images, _ = run
  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  contract = restored.architecture.contract()
  mean, std = data.normalization(data.load_dataset("fashion_mnist", os.path.dirname(workdir) + "/data").train_images)
  chex.assert_trees_all_close((np.asarray(contract.mean), np.asarray(contract.std)), (mean, std), rtol=1e-6)
  assert contract.shape == (28, 28, 1) and contract.dtype == "uint8" and contract.class_names == \
      CLASS_NAMES["fashion_mnist"]
  meta = artifact.read_meta(os.path.join(workdir, "deploy"))
  assert meta["input"] == restored.architecture.input_contract
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert meta["macs_model"] == summary["macs_after"]  # one definition, named; the plan's own figure beside it
  assert "macs_executed" in meta and "macs_per_example" not in meta


def test_runner_on_raw_uint8_images_gives_the_eval_accuracy(run, tmp_path):
  workdir, images, labels = run
  np.save(tmp_path / "x.npy", images)  # uint8, (N, 28, 28, 1): as stored
  code = (f"import sys; sys.path.insert(0, {os.path.join(workdir, 'deploy')!r}); import deploy_runner, numpy as np;"
          f"sys.exit(deploy_runner.main(['r', {os.path.join(workdir, 'deploy')!r}, {str(tmp_path / 'x.npy')!r}, "
          f"{str(tmp_path / 'y.npy')!r}]))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-2000:]
  accuracy = float(np.mean(np.argmax(np.load(tmp_path / "y.npy"), -1) == labels))
  assert accuracy == pytest.approx(_eval_accuracy(workdir), abs=1e-6)
  predict_fn = runner.load(os.path.join(workdir, "deploy"))
  contract = InputContract.from_json(artifact.read_meta(os.path.join(workdir, "deploy"))["input"])
  chex.assert_trees_all_close(np.asarray(predict_fn(images[..., 0])),  # a missing channel axis is added
                              np.asarray(predict_fn(contract.normalize(images), normalized=True)), atol=1e-6)


def test_runner_and_contract_normalize_alike_and_refuse_wrong_input_in_one_line(run):
  workdir, images, _ = run
  meta = artifact.read_meta(os.path.join(workdir, "deploy"))
  contract = InputContract.from_json(meta["input"])
  chex.assert_trees_all_equal(runner.model_inputs(images[:4], meta["input"], meta["input_shape"]),
                              contract.normalize(images[:4]))
  for bad, message in [(images[:2].astype(np.float32), "expected uint8 images of shape (batch, 28, 28, 1) as stored "
                                                       "on disk, got float32 (already-normalized float input: pass "
                                                       "normalized=True)"),
                       (images[:2, :27], "expected uint8 images of shape (batch, 28, 28, 1), got shape (2, 27, 28, 1)")]:
    for check in (lambda x: runner.model_inputs(x, meta["input"], meta["input_shape"]), contract.normalize):
      with pytest.raises(ValueError) as err:
        check(bad)
      assert str(err.value) == f"input: {message}"


def test_runner_command_line_errors_are_one_line(run, tmp_path):
  workdir, images, _ = run
  deploy_dir = os.path.join(workdir, "deploy")
  np.save(tmp_path / "float.npy", images[:2].astype(np.float32))
  for args, code, expected in [([], 2, runner.USAGE),
                               ([deploy_dir, str(tmp_path / "float.npy"), str(tmp_path / "y.npy")], 1,
                                "error: input: expected uint8 images of shape (batch, 28, 28, 1) as stored on disk"),
                               ([str(tmp_path / "nope"), str(tmp_path / "float.npy"), str(tmp_path / "y.npy")], 1,
                                "error: ")]:
    proc = subprocess.run([sys.executable, os.path.join(deploy_dir, "deploy_runner.py"), *args], capture_output=True,
                          text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]


@pytest.mark.parametrize("source", ["checkpoint", "artifact"])
def test_predict_on_png_and_npy_files(run, tmp_path, source):
  workdir, images, labels = run
  folder = tmp_path / "pngs"
  folder.mkdir()
  for i in range(5):
    Image.fromarray(images[i, :, :, 0]).save(folder / f"{i}.png")
  np.save(tmp_path / "batch.npy", images[5:8])
  results = predict.predict(workdir, [str(folder), str(tmp_path / "batch.npy")], source, top_k=2, batch=3)
  assert [r["file"] for r in results] == [str(folder / f"{i}.png") for i in range(5)] + \
      [f"{tmp_path / 'batch.npy'}[{i}]" for i in range(3)]
  apply = runner.load(os.path.join(workdir, "deploy"))
  expected = np.argmax(np.asarray(apply(images[:8])), -1)
  assert [r["top"][0]["index"] for r in results] == expected.tolist()
  assert all(r["top"][0]["class"] == CLASS_NAMES["fashion_mnist"][r["top"][0]["index"]] for r in results)
  assert all(r["top"][0]["probability"] >= r["top"][1]["probability"] for r in results)
  assert all(r["converted"] == "" for r in results)  # grayscale 28x28, as the model takes them: nothing to state
  text = predict.render(results, "text").splitlines()
  assert len(text) == 8 and text[0].startswith(f"{folder / '0.png'}: ")
  csv_lines = predict.render(results, "csv").splitlines()
  assert csv_lines[0] == "file,rank,class,index,probability" and len(csv_lines) == 1 + 8 * 2
  assert json.loads(predict.render(results, "json")) == results


def test_predict_command_line_and_its_errors(run, tmp_path):
  workdir, images, _ = run
  Image.fromarray(images[0, :, :, 0]).save(tmp_path / "ok.png")
  Image.fromarray(np.zeros((30, 30), np.uint8)).save(tmp_path / "big.png")
  cases = [([f"--workdir={workdir}", str(tmp_path / "ok.png")], 0, f"{tmp_path / 'ok.png'}: "),
           ([f"--workdir={workdir}", str(tmp_path / "big.png")], 1,
            f"error: {tmp_path / 'big.png'}: the model takes 28x28 images (fashion_mnist), this one is 30x30"),
           ([f"--workdir={tmp_path / 'nope'}", str(tmp_path / "ok.png")], 1, "error: no checkpoint at"),
           ([f"--workdir={workdir}"], 1, "error: name at least one image"),
           ([f"--workdir={workdir}", str(tmp_path / "missing.png")], 1, "error: "),
           ([str(tmp_path / "ok.png")], 1, "error: --workdir is required")]
  for args, code, expected in cases:
    proc = subprocess.run([sys.executable, "-m", "experiments.predict", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    out = (proc.stdout if code == 0 else proc.stderr).strip().splitlines()
    assert proc.returncode == code and out and out[-1].startswith(expected), proc.stdout + proc.stderr[-2000:]
    if code:
      assert "Traceback" not in proc.stderr and len([l for l in out if l.startswith("error:")]) == 1


def test_export_errors_are_one_line(tmp_path):
  for args, expected in [([f"--workdir={tmp_path / 'nope'}"], "error: no checkpoint at"),
                         ([], "error: --workdir is required")]:
    proc = subprocess.run([sys.executable, "-m", "experiments.export", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]]
    assert proc.stderr.strip().startswith(expected), proc.stderr[-2000:]


def _photo(image):
  """A 28x28 grayscale image as a phone photo would hold it: RGB, 120x160 (the garment upscaled to 120x120 in the
  middle, 20 columns of colored background on each side)."""
  rgb = np.asarray(Image.fromarray(image[:, :, 0]).resize((120, 120), Image.BILINEAR).convert("RGB"))
  photo = np.zeros((120, 160, 3), np.uint8)
  photo[:, :, 0], photo[:, :, 2] = 200, 90
  photo[:, 20:140] = rgb
  return photo


def test_predict_resize_fits_an_rgb_photo_and_says_how(run, tmp_path):
  workdir, images, _ = run
  Image.fromarray(_photo(images[0])).save(tmp_path / "photo.png")
  np.save(tmp_path / "rgb.npy", np.stack([_photo(images[i]) for i in (1, 2)]))
  with pytest.raises(ValueError, match=r"photo.png: the model takes 28x28 images \(fashion_mnist\), this one is "
                                       r"120x160; --resize center-crops it"):
    predict.predict(workdir, [str(tmp_path / "photo.png")])
  with pytest.raises(ValueError, match=r"rgb.npy: image has 3 channels, the model takes 1 \(--resize converts it\)"):
    predict.predict(workdir, [str(tmp_path / "rgb.npy")])
  results = predict.predict(workdir, [str(tmp_path / "photo.png"), str(tmp_path / "rgb.npy")], top_k=10,
                            resize=True)
  # The reference: Pillow alone (luma conversion, the central 120x120 box, bilinear resize), through the artifact.
  reference = np.stack([np.asarray(Image.fromarray(_photo(images[i])).convert("L").crop((20, 0, 140, 120))
                                   .resize((28, 28), Image.BILINEAR)) for i in (0, 1, 2)])
  logits = np.asarray(runner.load(os.path.join(workdir, "deploy"))(reference))
  expected = np.exp(logits - logits.max(-1, keepdims=True))
  expected /= expected.sum(-1, keepdims=True)
  got = np.array([[t["probability"] for t in sorted(r["top"], key=lambda t: t["index"])] for r in results])
  chex.assert_trees_all_close(got, expected, atol=1e-5)
  assert [r["converted"] for r in results] == ["RGB -> grayscale, center crop 120x160 -> 120x120, resize -> 28x28"] * 3
  proc = subprocess.run([sys.executable, "-m", "experiments.predict", f"--workdir={workdir}", "--resize",
                         str(tmp_path / "photo.png")], cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"note: {tmp_path / 'photo.png'}: RGB -> grayscale, center crop 120x160 -> 120x120, resize -> 28x28" in \
      proc.stderr.splitlines()
  assert proc.stdout.strip().splitlines()[-1].startswith(f"{tmp_path / 'photo.png'}: ")
