"""The execution plan measured in ONNX Runtime, as ``jaxsvd.deploy.artifact.autotune`` measures it in XLA.

``ort_plan(folded, batch)`` times each SVD layer alone in ONNX Runtime, merged and factored, at the batch's shapes
(``layer_model``), and keeps the faster. ``autotune(folded, contract, images)`` then builds the whole model under
each candidate plan ('auto' by channel-quantized MACs, 'merged', 'measured' in ORT) and times them side by side on
real calls (``xla_options.fastest``): a layer that wins alone can lose inside the model's graph optimizations.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from jaxsvd.core.validate import check_choice
from jaxsvd.deploy.folding import Folded
from jaxsvd.deploy.onnx.model import INPUT, layer_model, to_onnx
from jaxsvd.training import xla_options

CANDIDATES = ("auto", "merged", "measured")
THREADS = 0  # ONNX Runtime's default: one intra-op thread per physical core


def session(model: onnx.ModelProto | str, threads: int = THREADS) -> ort.InferenceSession:
  """An ONNX Runtime CPU session with every graph optimization on.

  Args:
    model: a ``ModelProto`` or a path to a .onnx file.
    threads: intra-op threads (0: ORT's default).

  Returns:
    The ``InferenceSession``.
  """
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = threads
  source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
  return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def runner(sess: ort.InferenceSession):
  """``f(x) -> the first output`` of a session.

  Args:
    sess: the session.

  Returns:
    The function.
  """
  return lambda x: sess.run(None, {INPUT: x})[0]


def ort_plan(folded: Folded, batch: int, trials: int = 5, threads: int = THREADS) -> dict[str, str]:
  """Each SVD layer's faster execution in ONNX Runtime, timed alone on random inputs of its traced shape.

  Args:
    folded: the folded model.
    batch: the batch size to time at.
    trials: timed calls per execution (median after one warm-up; the two alternate).
    threads: ORT intra-op threads.

  Returns:
    {layer path: 'merged' | 'factored'} (dense layers: 'merged').
  """
  plan = folded.plan("merged")
  rng = np.random.default_rng(0)
  for path in folded.ranks():
    x = rng.normal(size=(batch, *folded.sites[path].in_shape)).astype(np.float32)
    candidates = [(e, runner(session(layer_model(folded, path, e), threads))) for e in ("merged", "factored")]
    plan[path], _ = xla_options.fastest(candidates, (x,), trials)
  return plan


def candidate_plans(folded: Folded, batch: int, rules: Sequence[str] = CANDIDATES,
                    threads: int = THREADS) -> dict[str, dict[str, str]]:
  """{rule: plan} for ``rules`` ⊆ ('auto', 'merged', 'factored', 'measured'), later duplicates dropped.

  Args:
    folded: the folded model.
    batch: the batch size 'measured' times at (``ort_plan``).
    rules: the plan rules in order of preference.
    threads: ORT intra-op threads.

  Returns:
    {rule: plan}, each plan distinct.

  Raises:
    ValueError: one line for an unknown rule.
  """
  plans: dict[str, dict[str, str]] = {}
  for rule in rules:
    check_choice("plan rule", rule, (*CANDIDATES, "factored"))
    plan = ort_plan(folded, batch, threads=threads) if rule == "measured" else folded.plan(rule)
    if plan not in plans.values():
      plans[rule] = plan
  return plans


def autotune(folded: Folded, contract: Mapping | None, images: np.ndarray, rules: Sequence[str] = CANDIDATES,
             trials: int = 3, threads: int = THREADS):
  """The fastest plan in ONNX Runtime for batches shaped like ``images``, timed on whole-model calls.

  Args:
    folded: the folded model.
    contract: the input contract as JSON (the graph's input), or None.
    images: a batch as the graph takes it (uint8 under a contract) at the batch size to tune for.
    rules: the candidate plans (``candidate_plans``).
    trials: timed rounds per candidate after one warm-up.
    threads: ORT intra-op threads.

  Returns:
    (rule name, plan, the ``ModelProto`` under that plan without extra metadata).
  """
  candidates = []
  for rule, plan in candidate_plans(folded, images.shape[0], rules, threads).items():
    model = to_onnx(folded, plan, contract)
    candidates.append(((rule, plan, model), runner(session(model, threads))))
  (rule, plan, model), _ = xla_options.fastest(
      [(key, functools.partial(fn)) for key, fn in candidates], (images,), trials)
  return rule, plan, model


__all__ = ["CANDIDATES", "THREADS", "session", "runner", "ort_plan", "candidate_plans", "autotune"]
