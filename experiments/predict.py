"""Top-k classes of your own images from a run's checkpoint or its deploy artifact; a continuation of a prompt from a
language-model run's checkpoint.

  python -m experiments.predict --workdir=runs/fmnist shoe.png images/ batch.npy
  python -m experiments.predict --workdir=runs/lm --prompt='def ' --max_bytes=200        # greedy
  python -m experiments.predict --workdir=runs/lm --prompt='import ' --temperature=0.8 --seed=1   # sampled
  python -m experiments.predict --workdir=runs/fmnist --source=artifact --top_k=3 --format=csv images/ > preds.csv
  python -m experiments.predict --workdir=runs/fmnist --resize photo.jpg     # a phone photo: crop, resize, gray

FILES are PNG/JPEG (decoded to the model's channels), .npy arrays of uint8 images ((H, W[, C]) or a batch
(N, H, W[, C])), or folders of them (their files in name order). Images are taken as stored (uint8) and normalized
as in training by the input contract the checkpoint's architecture record carries (``jaxsvd.core.contract``); an
ImageNet-style contract first resizes and center-crops, any other needs the trained size exactly unless ``--resize``
(center crop to the model's aspect, bilinear resize to its HxW; a .npy image's channels converted too). Every
conversion (color to the model's grayscale or RGB, crop, resize) is stated on stderr, one ``note:`` line per image,
and in JSON output as ``converted``. ``--source``:
'checkpoint' (``jaxsvd.deploy.load_for_inference``) or 'artifact' (``WORKDIR/deploy`` or ``--artifact``, run by its
jax + numpy + flatbuffers runner) or 'onnx' (``model.onnx`` in the same directory, run by ONNX Runtime: the extra
'.[onnx]'). Output, one line per image: ``FILE: class p, class p, ...`` (text), or CSV / JSON. Every failure is one
``error:`` line.

``--prompt`` (a language-model run, ``experiments.lm_svd``): the run's latest checkpoint is restored from its record
alone (``experiments.models.byte_lm.restore``) and ``--max_bytes`` bytes after the prompt are printed: the most likely
byte each time, or with ``--temperature`` > 0 drawn at that temperature (``--seed``). Bytes that are not valid UTF-8
print as U+FFFD. The prompt must be non-empty UTF-8 without NUL, at most the model's context long.
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

from experiments.models import byte_lm
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
flags.DEFINE_boolean("resize", False, "Fit images of another size to the model: center crop to its aspect, resize "
                     "to its HxW (a .npy image's channels converted too); each conversion is stated.",
                     flag_values=FLAGS)

flags.DEFINE_string("prompt", None, "A language-model run: the text to continue (UTF-8, at most the context).",
                    flag_values=FLAGS)
flags.DEFINE_integer("max_bytes", 200, "With --prompt: the bytes to generate.", flag_values=FLAGS)
flags.DEFINE_float("temperature", 0.0, "With --prompt: 0 for greedy, else the sampling temperature.",
                   flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "With --prompt and --temperature > 0: the sampling seed.", flag_values=FLAGS)

ONNX_RUNNER = "jaxsvd.deploy.onnx.runner"  # resolved by name: the optional extra '.[onnx]'
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".npy")
FORMATS = ("text", "csv", "json")
MODE_NAMES = {"L": "grayscale", "P": "palette", "1": "1-bit", "LA": "grayscale + alpha"}  # Pillow modes, for notes


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


def read_images(path: str, contract: InputContract, resize: bool = False) -> list[tuple[str, np.ndarray, str]]:
  """(name, uint8 image of the contract's shape, its conversion) for each image in ``path`` (.npy: maybe a batch).

  Args:
    path: an image or .npy file.
    contract: the model's input contract.
    resize: whether an image of another size (or a .npy image of other channels) is converted (``fit``).

  Returns:
    The named images with how each was converted ('' when taken as stored); a batch's images are named ``path[i]``.

  Raises:
    ValueError: one line naming the file and the expected shape if an image cannot be used.
  """
  c = contract.shape[-1]
  try:
    if path.lower().endswith(".npy"):
      named = _npy_images(path, np.load(path, allow_pickle=False), c, resize)
    else:
      with open(path, "rb") as f:
        encoded = f.read()
      stored = image_ops.mode(encoded)
      named = [(path, image_ops.decode(encoded, c), MODE_NAMES.get(stored, stored))]
  except (OSError, ValueError) as err:
    raise ValueError(f"{path}: {cli.one_line(err)}") from None
  return [(name, fit(name, image, contract, resize), conversion(stored, image.shape, contract))
          for name, image, stored in named]


def _npy_images(path: str, array: np.ndarray, channels: int, resize: bool) -> list[tuple[str, np.ndarray, str]]:
  """A .npy array as (name, image, its color as stored): (H, W) or (H, W, 1|3) is one image, (N, H, W) or
  (N, H, W, C) a batch; other channels than ``channels`` are converted with ``resize`` only."""
  if array.dtype != np.uint8:
    raise ValueError(f"expected uint8 images as stored, got {array.dtype}")
  single = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3))
  if not single and array.ndim not in (3, 4):
    raise ValueError(f"expected an image (H, W[, C]) or a batch (N, H, W[, C]), got shape {array.shape}")
  named = [(path, array)] if single else [(f"{path}[{i}]", x) for i, x in enumerate(array)]
  out = []
  for name, x in named:
    x = x[..., None] if x.ndim == 2 else x
    stored = "grayscale" if x.shape[-1] == 1 else "RGB"
    if resize and x.shape[-1] in (1, 3):
      x = image_ops.convert_channels(x, channels)
    elif x.shape[-1] != channels:
      hint = " (--resize converts it)" if x.shape[-1] in (1, 3) else ""
      raise ValueError(f"image has {x.shape[-1]} channels, the model takes {channels}{hint}")
    out.append((name, image_ops.decode(x, channels), stored))
  return out


def fit(name: str, image: np.ndarray, contract: InputContract, resize: bool = False) -> np.ndarray:
  """``image`` at the contract's size: its evaluation crop ('center_crop'), else as it is when the size matches,
  else (``resize``) its central crop with the model's aspect resized to the model's size (``image_ops.crop_resize``).

  Raises:
    ValueError: one line naming ``--resize`` when the size differs and neither the contract nor ``resize`` resizes.
  """
  h, w, _ = contract.shape
  if contract.resize == "center_crop":
    return image_ops.resize_center_crop(image, h, contract.crop_fraction)
  if image.shape[:2] == (h, w):
    return image
  if not resize:
    raise ValueError(f"{name}: the model takes {h}x{w} images ({contract.dataset}), this one is "
                     f"{image.shape[0]}x{image.shape[1]}; --resize center-crops it to the model's aspect and "
                     "resizes it")
  return image_ops.crop_resize(image, h, w)


def conversion(stored: str, shape: tuple[int, ...], contract: InputContract) -> str:
  """How an image as stored (color ``stored``, (H, W, ...) ``shape``) became the model's input under ``fit``.

  Args:
    stored: its color as stored ('grayscale', 'RGB', 'RGBA', 'palette', ...).
    shape: its shape as stored.
    contract: the model's input contract.

  Returns:
    The steps, e.g. 'RGB -> grayscale, center crop 120x160 -> 120x120, resize -> 28x28'; '' when it is taken as it
    is (the contract's own evaluation crop, 'center_crop', is not a conversion).
  """
  h, w, c = contract.shape
  target = "grayscale" if c == 1 else "RGB"
  steps = [f"{stored} -> {target}"] if stored != target else []
  if contract.resize != "center_crop" and tuple(shape[:2]) != (h, w):
    _, _, ch, cw = image_ops.aspect_crop(shape[0], shape[1], h, w)
    if (ch, cw) != tuple(shape[:2]):
      steps.append(f"center crop {shape[0]}x{shape[1]} -> {ch}x{cw}")
    steps.append(f"resize -> {h}x{w}")
  return ", ".join(steps)


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
            top_k: int = 3, batch: int = 64, resize: bool = False) -> list[dict]:
  """The top-k classes of every image in ``paths``.

  Args:
    workdir: the run's directory.
    paths: image / .npy files and folders (``expand``).
    source: 'checkpoint', 'artifact' or 'onnx'.
    artifact_dir: the artifact directory for 'artifact'.
    top_k: classes per image.
    batch: images per model call.
    resize: whether images of another size are center-cropped and resized (``fit``).

  Returns:
    [{'file', 'top': [{'class', 'index', 'probability'}, ...], 'converted': ``conversion`` ('' if none)}] in
    input order.
  """
  check_min_int("--top_k", top_k, 1)
  check_min_int("--batch", batch, 1)
  files = expand(paths)
  probabilities, contract = predictor(workdir, source, artifact_dir)
  images = [item for path in files for item in read_images(path, contract, resize)]
  results = []
  for start in range(0, len(images), batch):
    chunk = images[start:start + batch]
    p = probabilities(np.stack([image for _, image, _ in chunk]))
    for (name, _, converted), row in zip(chunk, p):
      best = np.argsort(-row, kind="stable")[:top_k]
      results.append({"file": name, "top": [{"class": contract.class_name(int(i)), "index": int(i),
                                             "probability": float(row[i])} for i in best], "converted": converted})
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


def continue_prompt(workdir: str, prompt: str, max_bytes: int = 200, temperature: float = 0.0,
                    seed: int = 0) -> str:
  """The continuation of ``prompt`` by a language-model run's latest checkpoint (``byte_lm.generate``).

  Args:
    workdir: the language-model run.
    prompt: the text to continue.
    max_bytes: bytes to generate (≥ 1).
    temperature: 0 (greedy) or > 0 (sampled).
    seed: the sampling seed.

  Returns:
    The generated text (invalid UTF-8 as U+FFFD).

  Raises:
    ValueError: one line naming the bad flag (``--prompt``, ``--max_bytes``, ``--temperature``) or a workdir
      without a language-model checkpoint.
  """
  check_min_int("--max_bytes", max_bytes, 1)
  if not temperature >= 0.0 or temperature == float("inf"):
    raise ValueError(f"--temperature must be 0 (greedy) or a finite number > 0, got {temperature!r}")
  architecture, variables = byte_lm.restore(workdir)
  ids = byte_lm.encode_prompt(prompt, int(architecture.input_shape[0]))
  return byte_lm.generate(architecture, variables, ids, max_bytes, temperature, seed).decode("utf-8", "replace")


def _predict(paths: list[str]) -> None:
  if not FLAGS.workdir:
    raise ValueError("--workdir is required: the run to predict with (e.g. --workdir=runs/fmnist)")
  if FLAGS.prompt is not None:
    if paths:
      raise ValueError(f"--prompt continues text: name no image files too (got {paths})")
    print(FLAGS.prompt + continue_prompt(FLAGS.workdir, FLAGS.prompt, FLAGS.max_bytes, FLAGS.temperature, FLAGS.seed))
    return
  if not paths:
    raise ValueError("name at least one image, .npy file or folder after the flags")
  results = predict(FLAGS.workdir, paths, FLAGS.source, FLAGS.artifact, FLAGS.top_k, FLAGS.batch, FLAGS.resize)
  for r in results:
    if r["converted"]:
      print(f"note: {r['file']}: {r['converted']}", file=sys.stderr)
  print(render(results, FLAGS.format))


main = cli.command(__doc__, FLAGS, _predict)

if __name__ == "__main__":
  main(sys.argv)
