"""Deployment: BatchNorm folding, per-layer execution plans, the ``jax.export`` artifact and its runner.

  folding     ``fold``: every BatchNorm folded into the layer before it; ``Folded`` plans merged/factored per layer
  artifact    ``export`` / ``write`` / ``autotune``: the standalone artifact (StableHLO + weights + meta.json)
  runner      the artifact's runner (jax, numpy, flatbuffers only; copied into every artifact as ``deploy_runner.py``)
  params      ``merged_params`` / ``factored_params``: an SVD model's params as dense kernels or √|s| factors
  inference   ``load_for_inference``: a checkpoint as a jitted, autotuned function
  onnx        the folded model as ONNX, run by ONNX Runtime (optional extra '.[onnx]'; not imported here)

The artifact's input contract: ``docs/deployment.md#the-runners-input-contract``.
"""

from jaxsvd.deploy import artifact as artifact
from jaxsvd.deploy import folding as folding
from jaxsvd.deploy import inference as inference
from jaxsvd.deploy import params as params
from jaxsvd.deploy import runner as runner
from jaxsvd.deploy.folding import EXECUTIONS as EXECUTIONS
from jaxsvd.deploy.folding import PLAN_RULES as PLAN_RULES
from jaxsvd.deploy.folding import Folded as Folded
from jaxsvd.deploy.folding import Site as Site
from jaxsvd.deploy.folding import execution_weights as execution_weights
from jaxsvd.deploy.folding import fold as fold
from jaxsvd.deploy.folding import run_layer as run_layer
from jaxsvd.deploy.inference import load_for_inference as load_for_inference
from jaxsvd.deploy.params import factored_params as factored_params
from jaxsvd.deploy.params import merged_params as merged_params

__all__ = ["EXECUTIONS", "PLAN_RULES", "Folded", "Site", "execution_weights", "factored_params", "fold",
           "load_for_inference", "merged_params", "run_layer", "artifact", "folding", "inference", "params", "runner"]
