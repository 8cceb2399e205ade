"""Runs a jaxsvd deploy artifact with nothing but jax and numpy (``artifact.write`` copies this file next to it).

  python deploy_runner.py ARTIFACT_DIR images.npy logits.npy
  # or: import deploy_runner; predict = deploy_runner.load(ARTIFACT_DIR); logits = predict(images)

The artifact: ``model.stablehlo`` (``jax.export``, symbolic batch dimension), ``weights.npz`` (its inputs by name),
``meta.json`` (input shape, the XLA:CPU options the export machine measured fastest, ...).
"""

import json
import pathlib
import sys

import jax
import numpy as np


def load(directory):
  """``predict(images) -> logits`` for float32 images of shape (batch, *meta['input_shape']).

  Args:
    directory: the artifact directory holding ``model.stablehlo``, ``weights.npz`` and ``meta.json``.

  Returns:
    ``predict(images)``: takes float32 images of shape (batch, *meta['input_shape']) (NHWC, normalized as in
    training; any batch size; converted with ``np.asarray(images, np.float32)``) and returns the model's logits
    as a jax array, batch first (batch, classes) for a classifier. On CPU it is jitted with meta.json's
    ``xla_options``.
  """
  root = pathlib.Path(directory)
  exported = jax.export.deserialize(bytearray((root / "model.stablehlo").read_bytes()))
  with np.load(root / "weights.npz", allow_pickle=False) as npz:
    weights = {name: jax.device_put(npz[name]) for name in npz.files}
  meta = json.loads((root / "meta.json").read_text())
  options = meta.get("xla_options") if jax.default_backend() == "cpu" else None
  call = jax.jit(exported.call, compiler_options=options or None)
  return lambda images: call(weights, np.asarray(images, np.float32))


if __name__ == "__main__":
  predict = load(sys.argv[1])
  np.save(sys.argv[3], np.asarray(predict(np.load(sys.argv[2], allow_pickle=False))))


__all__ = ["load"]
