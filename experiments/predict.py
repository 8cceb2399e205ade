"""Top-k classes of your own images from a run's checkpoint or its deploy artifact.

  python -m experiments.predict --workdir=runs/fmnist shoe.png images/ batch.npy
  python -m experiments.predict --workdir=runs/fmnist --source=artifact --top_k=3 --format=csv images/ > preds.csv

FILES are PNG/JPEG (decoded to the model's channels), .npy arrays of uint8 images ((H, W[, C]) or a batch
(N, H, W[, C])), or folders of them (their files in name order). Images are taken as stored (uint8) and normalized
as in training by the input contract the checkpoint's architecture record carries (``jaxsvd.core.contract``); an
ImageNet-style contract first resizes and center-crops, any other needs the trained size exactly. ``--source``:
'checkpoint' (``jaxsvd.deploy.load_for_inference``) or 'artifact' (``WORKDIR/deploy`` or ``--artifact``, run by its
jax + numpy runner) or 'onnx' (``model.onnx`` in the same directory, run by ONNX Runtime: the extra '.[onnx]'). Output, one line per image: ``FILE: class p, class p, ...`` (text), or CSV / JSON. Every
failure is one ``error:`` line.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import sys

import jax
import numpy as np
from absl import flags

from experiments.run import cli
from jaxsvd.checkpoint import resolve
from jaxsvd.core.contract import InputContract
from jaxsvd.core.validate import check_choice, check_min_int
from jaxsvd.data import image_ops
from jaxsvd.deploy import artifact
from jaxsvd.deploy.inference import load_for_inference

FLAGS = flags.FlagValues()  # this tool's own flags (cli.command), not absl's global ones
flags.DEFINE_string("workdir", None, "The run's directory (its checkpoints/, and deploy/ for --source=artifact).",
                    flag_values=FLAGS)
flags.DEFINE_enum("source", "checkpoint", ["checkpoint", "artifact", "onnx"],
                  "Predict with the checkpoint, the artifact, or model.onnx (ONNX Runtime).", flag_values=FLAGS)
flags.DEFINE_string("artifact", None, "The deploy artifact directory (default: WORKDIR/deploy).", flag_values=FLAGS)
flags.DEFINE_integer("top_k", 3, "Classes shown per image.", flag_values=FLAGS)
flags.DEFINE_enum("format", "text", ["text", "csv", "json"], "Output format.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 64, "Images per model call.", flag_values=FLAGS)

ONNX_RUNNER = "jaxsvd.deploy.onnx.runner"  # resolved by name: the optional extra '.[onnx]'
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".npy")
FORMATS = ("text", "csv", "json")


def expand(paths: list[str]) -> list[str]:
  """Files in the order given, each folder replaced by its image and .npy files in name order.

  Args:
    paths: files and folders.

  Returns:
    The files.

  Raises:
    ValueError: if a path does not exist, a folder holds no image, or a file has another extension.
  """
  files = []
  for path in paths:
    if os.path.isdir(path):
      found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
      if not found:
        raise ValueError(f"{path}: no {'/'.join(IMAGE_EXTENSIONS)} files in this folder")
      files += found
    elif not os.path.exists(path):
      raise ValueError(f"{path}: no such file or folder")
    elif not path.lower().endswith(IMAGE_EXTENSIONS):
      raise ValueError(f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)})")
    else:
      files.append(path)
  return files


def read_images(path: str, contract: InputContract) -> list[tuple[str, np.ndarray]]:
  """(name, uint8 image of the contract's shape) for each image in ``path`` (a .npy file may hold a batch).

  Args:
    path: an image or .npy file.
    contract: the model's input contract.

  Returns:
    The named images; a batch's images are named ``path[i]``.

  Raises:
    ValueError: one line naming the file and the expected shape if an image cannot be used.
  """
  c = contract.shape[-1]
  try:
    if path.lower().endswith(".npy"):
      named = _npy_images(path, np.load(path, allow_pickle=False), c)
    else:
      with open(path, "rb") as f:
        named = [(path, image_ops.decode(f.read(), c))]
  except (OSError, ValueError) as err:
    raise ValueError(f"{path}: {cli.one_line(err)}") from None
  return [(name, fit(name, image, contract)) for name, image in named]


def _npy_images(path: str, array: np.ndarray, channels: int) -> list[tuple[str, np.ndarray]]:
  """A .npy array as named images: (H, W) or (H, W, 1|3) is one image; (N, H, W) or (N, H, W, C) a batch."""
  if array.dtype != np.uint8:
    raise ValueError(f"expected uint8 images as stored, got {array.dtype}")
  single = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3))
  if single:
    return [(path, image_ops.decode(array, channels))]
  if array.ndim not in (3, 4):
    raise ValueError(f"expected an image (H, W[, C]) or a batch (N, H, W[, C]), got shape {array.shape}")
  return [(f"{path}[{i}]", image_ops.decode(x, channels)) for i, x in enumerate(array)]


def fit(name: str, image: np.ndarray, contract: InputContract) -> np.ndarray:
  """``image`` at the contract's size: its evaluation crop ('center_crop'), else as it is when the size matches.

  Raises:
    ValueError: one line when the size differs and the contract does not resize.
  """
  h, w, _ = contract.shape
  if contract.resize == "center_crop":
    return image_ops.resize_center_crop(image, h, contract.crop_fraction)
  if image.shape[:2] != (h, w):
    raise ValueError(f"{name}: the model takes {h}x{w} images ({contract.dataset}), this one is "
                     f"{image.shape[0]}x{image.shape[1]}")
  return image


def predictor(workdir: str, source: str = "checkpoint", artifact_dir: str | None = None):
  """(``probabilities(uint8 batch) -> (batch, classes)``, the input contract) of a run.

  Args:
    workdir: the run's directory.
    source: 'checkpoint', 'artifact' or 'onnx'.
    artifact_dir: the artifact (default ``workdir/deploy``).

  Returns:
    (function, ``InputContract``).

  Raises:
    ValueError: if the run's record has no input contract, or the artifact is missing (one line).
  """
  check_choice("--source", source, ("checkpoint", "artifact", "onnx"))
  if source == "onnx":
    run, contract = onnx_predictor(workdir, artifact_dir)
  elif source == "artifact":
    directory = artifact_dir or os.path.join(workdir, "deploy")
    if not os.path.isfile(os.path.join(directory, "meta.json")):
      raise ValueError(f"--source=artifact: no deploy artifact in {directory} (python -m experiments.export "
                       f"--workdir={workdir} writes one)")
    contract = artifact.read_meta(directory).get("input")
    run = artifact.load(directory)
  else:
    apply, architecture = load_for_inference(*resolve(os.path.join(workdir, "checkpoints")))
    contract = architecture.input_contract
    run = None if contract is None else (lambda x: apply(InputContract.from_json(contract).normalize(x)))
  if contract is None:
    raise ValueError(f"{workdir}: the checkpoint has no input contract (written by jaxsvd < 0.3.1); resume the run "
                     "once with this version to record it, or feed normalized arrays to jaxsvd.deploy")
  return (lambda x: np.asarray(jax.nn.softmax(np.asarray(run(x), np.float32), axis=-1))), \
      InputContract.from_json(contract)


def onnx_predictor(workdir: str, directory: str | None = None):
  """(``logits(uint8 batch)``, the input contract as JSON) of ``model.onnx`` run by its ONNX Runtime runner.

  Args:
    workdir: the run's directory.
    directory: where ``model.onnx`` is (default ``workdir/deploy``).

  Returns:
    (function, contract JSON or None).

  Raises:
    ValueError: one line if the model is missing or onnxruntime is not installed.
  """
  directory = directory or os.path.join(workdir, "deploy")
  if not os.path.isfile(os.path.join(directory, "model.onnx")):
    raise ValueError(f"--source=onnx: no model.onnx in {directory} (python -m experiments.export --format=onnx "
                     f"--workdir={workdir} writes one)")
  try:
    onnx_runner = importlib.import_module(ONNX_RUNNER)
  except ImportError as err:
    raise ValueError(f"--source=onnx needs onnxruntime ({err.name} is missing): pip install -e '.[onnx]'") from None
  run = onnx_runner.load(directory)
  return run, run.metadata.get("input")


def predict(workdir: str, paths: list[str], source: str = "checkpoint", artifact_dir: str | None = None,
            top_k: int = 3, batch: int = 64) -> list[dict]:
  """The top-k classes of every image in ``paths``.

  Args:
    workdir: the run's directory.
    paths: image / .npy files and folders (``expand``).
    source: 'checkpoint', 'artifact' or 'onnx'.
    artifact_dir: the artifact directory for 'artifact'.
    top_k: classes per image.
    batch: images per model call.

  Returns:
    [{'file', 'top': [{'class', 'index', 'probability'}, ...]}] in input order.
  """
  check_min_int("--top_k", top_k, 1)
  check_min_int("--batch", batch, 1)
  files = expand(paths)
  probabilities, contract = predictor(workdir, source, artifact_dir)
  images = [item for path in files for item in read_images(path, contract)]
  results = []
  for start in range(0, len(images), batch):
    chunk = images[start:start + batch]
    p = probabilities(np.stack([image for _, image in chunk]))
    for (name, _), row in zip(chunk, p):
      best = np.argsort(-row, kind="stable")[:top_k]
      results.append({"file": name, "top": [{"class": contract.class_name(int(i)), "index": int(i),
                                             "probability": float(row[i])} for i in best]})
  return results


def render(results: list[dict], fmt: str) -> str:
  """``predict``'s results as text (one line per image), CSV (one row per image and rank) or JSON.

  Args:
    results: ``predict``'s output.
    fmt: 'text', 'csv' or 'json'.

  Returns:
    The text.
  """
  check_choice("--format", fmt, FORMATS)
  if fmt == "json":
    return json.dumps(results, indent=1)
  if fmt == "text":
    return "\n".join(f"{r['file']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
                     for r in results)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(["file", "rank", "class", "index", "probability"])
  for r in results:
    for rank, t in enumerate(r["top"], 1):
      writer.writerow([r["file"], rank, t["class"], t["index"], f"{t['probability']:.6f}"])
  return out.getvalue().rstrip("\n")


def _predict(paths: list[str]) -> None:
  if not FLAGS.workdir:
    raise ValueError("--workdir is required: the run to predict with (e.g. --workdir=runs/fmnist)")
  if not paths:
    raise ValueError("name at least one image, .npy file or folder after the flags")
  print(render(predict(FLAGS.workdir, paths, FLAGS.source, FLAGS.artifact, FLAGS.top_k, FLAGS.batch), FLAGS.format))


main = cli.command(__doc__, FLAGS, _predict)

if __name__ == "__main__":
  main(sys.argv)
