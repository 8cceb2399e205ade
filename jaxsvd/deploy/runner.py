"""Runs a jaxsvd deploy artifact with jax, numpy and flatbuffers only (``artifact.write`` copies this file next to it).

  pip install jax numpy flatbuffers     # all it needs (flatbuffers: jax.export's deserializer; jax does not pull it in)
  python deploy_runner.py ARTIFACT_DIR images.npy logits.npy [--normalized]
  # or: import deploy_runner; predict = deploy_runner.load(ARTIFACT_DIR); logits = predict(images)

The artifact: ``model.stablehlo`` (``jax.export``, symbolic batch dimension), ``weights.npz`` (its inputs by name),
``meta.json`` (the input contract ``input``, the XLA:CPU options the export machine measured fastest, ...).

Input (``meta.json``'s ``input``, ``jaxsvd.core.contract``): uint8 images as stored on disk, (batch, H, W, C) — or
(batch, H, W) for one channel — normalized here exactly as in training: ``(x / scale − mean) / std``. Float input is
taken only with ``normalized=True`` (``--normalized``): then it must already be normalized. Any other input is a
one-line ``ValueError`` naming the expected shape and dtype. An artifact without ``input`` (jaxsvd ≤ 0.3.0) takes
normalized float32 input only.
"""

import json
import pathlib
import sys

REQUIREMENTS = ("jax", "numpy", "flatbuffers")
INSTALL = "pip install " + " ".join(REQUIREMENTS)
try:
  import flatbuffers  # noqa: F401 -- not used here: jax.export.deserialize imports it, and jax does not depend on it
  import jax
  import numpy as np
except ImportError as missing:
  NEEDS = f"deploy_runner needs {', '.join(REQUIREMENTS)}; {missing.name or missing} is missing: {INSTALL}"
  if __name__ == "__main__":
    sys.exit(f"error: {NEEDS}")
  raise ImportError(NEEDS) from None

USAGE = "usage: python deploy_runner.py ARTIFACT_DIR images.npy logits.npy [--normalized]"


def model_inputs(images, contract, shape, normalized=False):
  """The float32 model inputs for ``images`` under ``contract`` (meta.json's ``input``; None: normalized only).

  Args:
    images: the batch (see the module doc).
    contract: the input contract as JSON, or None.
    shape: one example's shape (meta.json's ``input_shape``).
    normalized: whether ``images`` are already normalized floats.

  Returns:
    float32 (batch, *shape) inputs.

  Raises:
    ValueError: one line naming the expected shape and dtype.
  """
  x = np.asarray(images)
  raw = contract is not None and not normalized
  dtype = contract["dtype"] if raw else "float"
  expected = f"{dtype} images of shape (batch, {', '.join(map(str, shape))})"
  if x.ndim == len(shape) and shape[-1] == 1:
    x = x[..., None]
  if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
    raise ValueError(f"input: expected {expected}, got shape {x.shape}")
  if not raw:
    if not np.issubdtype(x.dtype, np.floating):
      hint = "" if contract is None else " (raw uint8 images: leave normalized off)"
      raise ValueError(f"input: expected normalized {expected}, got {x.dtype}{hint}")
    return x.astype(np.float32)
  if x.dtype != np.dtype(dtype):
    hint = " (already-normalized float input: pass normalized=True)" if np.issubdtype(x.dtype, np.floating) else ""
    raise ValueError(f"input: expected {expected} as stored on disk, got {x.dtype}{hint}")
  mean, std = np.asarray(contract["mean"], np.float32), np.asarray(contract["std"], np.float32)
  return (x.astype(np.float32) / np.float32(contract["scale"]) - mean) / std


def load(directory):
  """``predict(images, normalized=False) -> logits`` for the artifact in ``directory``.

  Args:
    directory: the artifact directory holding ``model.stablehlo``, ``weights.npz`` and ``meta.json``.

  Returns:
    ``predict(images, normalized=False)``: images as the module doc says, any batch size; returns the model's
    logits as a jax array, batch first (batch, classes) for a classifier. On CPU it is jitted with meta.json's
    ``xla_options``.
  """
  root = pathlib.Path(directory)
  exported = jax.export.deserialize(bytearray((root / "model.stablehlo").read_bytes()))
  with np.load(root / "weights.npz", allow_pickle=False) as npz:
    weights = {name: jax.device_put(npz[name]) for name in npz.files}
  meta = json.loads((root / "meta.json").read_text())
  options = meta.get("xla_options") if jax.default_backend() == "cpu" else None
  call = jax.jit(exported.call, compiler_options=options or None)
  contract, shape = meta.get("input"), meta["input_shape"]
  return lambda images, normalized=False: call(weights, model_inputs(images, contract, shape, normalized))


def main(argv):
  """The command line: ``ARTIFACT_DIR images.npy logits.npy [--normalized]``.

  Args:
    argv: the command line, program name first.

  Returns:
    The exit code: 0 after one line naming the file written and the logits' shape, 1 after one ``error:`` line,
    2 after the usage line.
  """
  args = [a for a in argv[1:] if a != "--normalized"]
  if len(args) != 3 or any(a.startswith("-") for a in args):
    print(USAGE, file=sys.stderr)
    return 2
  try:
    predict = load(args[0])
    logits = predict(np.load(args[1], allow_pickle=False), normalized="--normalized" in argv)
    logits = np.asarray(logits)
    out = pathlib.Path(args[2] if args[2].endswith(".npy") else args[2] + ".npy")  # np.save's own naming
    np.save(out, logits)
  except (OSError, ValueError, KeyError) as err:
    print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    return 1
  print(f"wrote {out.resolve()}: logits of shape {logits.shape} ({logits.dtype})")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))


__all__ = ["REQUIREMENTS", "INSTALL", "USAGE", "model_inputs", "load", "main"]
