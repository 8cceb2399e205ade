"""ONNX export of a folded model, run by ONNX Runtime (the optional extra ``pip install -e '.[onnx]'``).

  graph       ``Graph`` / ``emit``: a jaxpr as ONNX nodes, constants folded on the host, calls inlined
  primitives  ``TABLE``: each jax primitive's ONNX translation (opset 17); a missing one is a one-line error
  model       ``to_onnx``: the folded model with the input contract inside (uint8 NHWC in, logits out), metadata
  tune        ``autotune`` / ``ort_plan``: the per-layer merged/factored plan measured in ONNX Runtime
  quantize    ``quantize.quantize``: int8 static quantization (ONNX Runtime's tool), calibrated on images as stored
  runner      the model's runner (onnxruntime + numpy only; copied next to it as ``onnx_runner.py``)

Only this subpackage imports ``onnx`` and ``onnxruntime``; the rest of jaxsvd never imports it.
"""

from jaxsvd.deploy.onnx import graph as graph
from jaxsvd.deploy.onnx import model as model
from jaxsvd.deploy.onnx import primitives as primitives
from jaxsvd.deploy.onnx import quantize as quantize
from jaxsvd.deploy.onnx import runner as runner
from jaxsvd.deploy.onnx import tune as tune
from jaxsvd.deploy.onnx.model import function_model as function_model
from jaxsvd.deploy.onnx.model import to_onnx as to_onnx
from jaxsvd.deploy.onnx.tune import autotune as autotune
from jaxsvd.deploy.onnx.tune import ort_plan as ort_plan

__all__ = ["autotune", "function_model", "ort_plan", "to_onnx", "graph", "model", "primitives", "quantize", "runner", "tune"]
