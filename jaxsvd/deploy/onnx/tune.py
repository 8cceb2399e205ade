"""The execution plan measured in ONNX Runtime, as ``jaxsvd.deploy.artifact.autotune`` measures it in XLA.

``ort_plan(folded, batch)`` times each SVD layer alone in ONNX Runtime at the batch's shapes (``layer_model``):
merged, factored, and factored with its rank rounded up to a multiple of ``RANK_MULTIPLE`` (zero directions added:
the same function, wider vectors); it keeps the fastest, so a rank is rounded only where ORT measured a gain (the
model's MACs then count the rounded rank: ``Folded.macs`` is what executes). ``autotune(folded, contract, images)`` then builds the whole model under
each candidate plan ('auto' by channel-quantized MACs, 'merged', 'measured' in ORT) and times them side by side on
real calls (``xla_options.fastest``): a layer that wins alone can lose inside the model's graph optimizations.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort

from jaxsvd.core.validate import check_choice
from jaxsvd.deploy.folding import Folded
from jaxsvd.deploy.onnx.model import INPUT, layer_model, to_onnx
from jaxsvd.training import xla_options

CANDIDATES = ("auto", "merged", "measured")
RANK_MULTIPLE = 8
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


def padded_rank(w: Mapping[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
  """An SVD layer's canonical weights with its rank rounded up to ``multiple`` by zero directions (same function).

  Args:
    w: {'U', 's', 'V'[, 'bias']} (``Folded.layers[path]``).
    multiple: the rank multiple.

  Returns:
    The weights with U, V given zero columns and s zeros up to the rounded rank.
  """
  extra = -w["s"].shape[0] % multiple
  pad = lambda a: np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, extra)])  # noqa: E731
  return {**w, "U": pad(w["U"]), "V": pad(w["V"]), "s": pad(w["s"])}


def ort_plan(folded: Folded, batch: int, trials: int = 5, threads: int = THREADS,
             multiple: int = RANK_MULTIPLE) -> tuple[dict[str, str], Folded]:
  """Each SVD layer's fastest execution in ONNX Runtime, timed alone on random inputs of its traced shape.

  Args:
    folded: the folded model.
    batch: the batch size to time at.
    trials: timed calls per execution (median after one warm-up; the candidates alternate).
    threads: ORT intra-op threads.
    multiple: the rank multiple tried for the factored execution (1: none).

  Returns:
    ({layer path: 'merged' | 'factored'} (dense layers: 'merged'), the folded model with the ranks rounded where
    that measured faster).
  """
  plan, layers = folded.plan("merged"), dict(folded.layers)
  rng = np.random.default_rng(0)
  for path, rank in folded.ranks().items():
    x = rng.normal(size=(batch, *folded.sites[path].in_shape)).astype(np.float32)
    variants = [("merged", folded), ("factored", folded)]
    if multiple > 1 and rank % multiple:
      rounded = dataclasses.replace(folded, layers={**folded.layers, path: padded_rank(folded.layers[path], multiple)})
      variants.append(("factored", rounded))
    candidates = [((e, f), runner(session(layer_model(f, path, e), threads))) for e, f in variants]
    (plan[path], best), _ = xla_options.fastest(candidates, (x,), trials)
    layers[path] = best.layers[path]
  return plan, dataclasses.replace(folded, layers=layers)


def candidate_plans(folded: Folded, batch: int, rules: Sequence[str] = CANDIDATES,
                    threads: int = THREADS) -> dict[str, tuple[dict[str, str], Folded]]:
  """{rule: plan} for ``rules`` ⊆ ('auto', 'merged', 'factored', 'measured'), later duplicates dropped.

  Args:
    folded: the folded model.
    batch: the batch size 'measured' times at (``ort_plan``).
    rules: the plan rules in order of preference.
    threads: ORT intra-op threads.

  Returns:
    {rule: (plan, the folded model it runs)}, each distinct ('measured' may round ranks: ``ort_plan``).

  Raises:
    ValueError: one line for an unknown rule.
  """
  plans: dict[str, tuple[dict[str, str], Folded]] = {}
  for rule in rules:
    check_choice("plan rule", rule, (*CANDIDATES, "factored"))
    plan, model = ort_plan(folded, batch, threads=threads) if rule == "measured" else (folded.plan(rule), folded)
    if not any(plan == p and model.ranks() == m.ranks() for p, m in plans.values()):
      plans[rule] = (plan, model)
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
    (rule name, plan, the ``ModelProto`` under that plan (its metadata's ``macs_executed`` counts rounded ranks),
    without the caller's extra metadata).
  """
  candidates = []
  for rule, (plan, variant) in candidate_plans(folded, images.shape[0], rules, threads).items():
    model = to_onnx(variant, plan, contract)
    candidates.append(((rule, plan, model), runner(session(model, threads))))
  (rule, plan, model), _ = xla_options.fastest(candidates, (images,), trials)
  return rule, plan, model


__all__ = ["CANDIDATES", "RANK_MULTIPLE", "THREADS", "session", "runner", "padded_rank", "ort_plan", "candidate_plans", "autotune"]
