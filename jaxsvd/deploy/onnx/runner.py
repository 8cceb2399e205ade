"""Runs a jaxsvd ONNX model with nothing but onnxruntime and numpy (copied next to it as ``onnx_runner.py``).

  python onnx_runner.py MODEL.onnx images.npy logits.npy [--threads=N]
  # or: import onnx_runner; predict = onnx_runner.load("model.onnx"); logits = predict(images)

Input: what the model's ``input`` metadata (the input contract) names: uint8 images as stored on disk,
(batch, H, W, C) — or (batch, H, W) for one channel; the graph normalizes them inside exactly as in training.
A model exported without a contract takes normalized float32 images. Any other input is a one-line
``ValueError`` naming the expected shape and dtype, before ONNX Runtime sees it.
"""

import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort

USAGE = "usage: python onnx_runner.py MODEL.onnx images.npy logits.npy [--threads=N]"


def check_images(images, dtype, shape):
  """``images`` as the graph takes them, or a one-line ``ValueError``.

  Args:
    images: the batch (see the module doc).
    dtype: the graph input's dtype ('uint8' under a contract, else 'float32').
    shape: one example's shape.

  Returns:
    A (batch, *shape) array of ``dtype`` (a missing channel axis of a one-channel model is added).

  Raises:
    ValueError: one line naming the expected shape and dtype.
  """
  x = np.asarray(images)
  raw = dtype == "uint8"
  expected = f"{dtype} images of shape (batch, {', '.join(map(str, shape))})"
  if x.ndim == len(shape) and shape[-1] == 1:
    x = x[..., None]
  if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
    raise ValueError(f"input: expected {expected}, got shape {x.shape}")
  if raw and x.dtype != np.uint8:
    hint = " (this model normalizes inside: give the raw pixels)" if np.issubdtype(x.dtype, np.floating) else ""
    raise ValueError(f"input: expected {expected} as stored on disk, got {x.dtype}{hint}")
  if not raw and not np.issubdtype(x.dtype, np.floating):
    raise ValueError(f"input: expected normalized {expected}, got {x.dtype}")
  return x if raw else x.astype(np.float32)


def read_metadata(sess):
  """The model's metadata (``metadata_props``), JSON values decoded.

  Args:
    sess: an ``onnxruntime.InferenceSession``.

  Returns:
    {key: value}.
  """
  out = {}
  for key, value in sess.get_modelmeta().custom_metadata_map.items():
    try:
      out[key] = json.loads(value)
    except json.JSONDecodeError:
      out[key] = value
  return out


def load(path, threads=0):
  """``predict(images) -> logits`` for the ONNX model at ``path``.

  Args:
    path: the .onnx file (or the directory holding ``model.onnx``).
    threads: ONNX Runtime intra-op threads (0: its default).

  Returns:
    ``predict(images)``: images as the module doc says, any batch size; returns float32 logits (batch, classes).
    ``predict.metadata`` holds the model's metadata.

  Raises:
    ValueError: one line if the file is missing or is not a jaxsvd ONNX model.
  """
  path = pathlib.Path(path)
  path = path / "model.onnx" if path.is_dir() else path
  if not path.is_file():
    raise ValueError(f"{path}: no ONNX model there (python -m experiments.export --format=onnx writes one)")
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = int(threads)
  sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
  meta = read_metadata(sess)
  if "input_shape" not in meta:
    raise ValueError(f"{path}: not a jaxsvd ONNX model (no input_shape in its metadata)")
  (graph_input,) = sess.get_inputs()
  dtype = "uint8" if graph_input.type == "tensor(uint8)" else "float32"
  shape, name = meta["input_shape"], graph_input.name

  def predict(images):
    return sess.run(None, {name: check_images(images, dtype, shape)})[0]

  predict.metadata = meta
  return predict


def main(argv):
  """The command line: ``MODEL.onnx images.npy logits.npy [--threads=N]``.

  Args:
    argv: the command line, program name first.

  Returns:
    The exit code: 0, 1 after one ``error:`` line, 2 after the usage line.
  """
  threads = [a.split("=", 1)[1] for a in argv[1:] if a.startswith("--threads=")]
  args = [a for a in argv[1:] if not a.startswith("--threads=")]
  if len(args) != 3 or any(a.startswith("-") for a in args) or not all(t.isdigit() for t in threads):
    print(USAGE, file=sys.stderr)
    return 2
  try:
    predict = load(args[0], int(threads[-1]) if threads else 0)
    np.save(args[2], predict(np.load(args[1], allow_pickle=False)))
  except (OSError, ValueError, KeyError) as err:
    print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))


__all__ = ["USAGE", "check_images", "read_metadata", "load", "main"]
