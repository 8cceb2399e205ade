"""int8 static quantization of an exported model with ONNX Runtime's own tool (``onnxruntime.quantization``).

``quantize(model_path, out_path, images)`` calibrates activation ranges on ``images`` given exactly as the graph
takes them (uint8 as stored: the contract's normalization runs inside, so calibration sees what inference sees),
then writes a QDQ model: int8 weights (per tensor), uint8 activations. Per-channel weights are off by default:
onnxruntime 1.32's bias-scale adjustment fails on per-channel Conv weights (a ``ValueError`` inside
``quantize_static``). The result is a model the same runner loads; its metadata is kept and marked ``int8``.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from jaxsvd.deploy.onnx.model import INPUT, add_metadata


class _Batches(CalibrationDataReader):
  """The calibration images in batches, as ``quantize_static`` reads them."""

  def __init__(self, images: np.ndarray, batch: int):
    self._feeds = iter([{INPUT: images[i:i + batch]} for i in range(0, len(images), batch)])

  def get_next(self):
    return next(self._feeds, None)


def quantize(model_path: str, out_path: str, images: np.ndarray, batch: int = 32, per_channel: bool = False) -> str:
  """Writes the int8 (QDQ) version of the model at ``model_path`` to ``out_path``.

  Args:
    model_path: a model written by ``to_onnx`` / ``experiments.export --format=onnx``.
    out_path: where to write the quantized model.
    images: calibration images as the graph takes them (e.g. a few hundred training images, uint8 as stored).
    batch: images per calibration call.
    per_channel: per-channel weight scales (see the module doc).

  Returns:
    ``out_path``.

  Raises:
    ValueError: one line if ``images`` is empty.
  """
  if len(images) == 0:
    raise ValueError("quantize: images must hold at least one calibration image")
  with tempfile.TemporaryDirectory() as tmp:
    prepared = os.path.join(tmp, "prepared.onnx")
    quant_pre_process(model_path, prepared, skip_symbolic_shape=True)
    quantize_static(prepared, out_path, _Batches(np.asarray(images), batch), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
  model = onnx.load(out_path)
  source = {p.key: p.value for p in onnx.load(model_path).metadata_props}
  add_metadata(model, {**source, "quantization": {"weights": "int8", "activations": "uint8", "format": "QDQ",
                                                  "per_channel": per_channel, "calibration_images": len(images)}})
  onnx.save_model(model, out_path)
  return out_path


__all__ = ["quantize"]
