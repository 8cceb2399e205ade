"""A folded model (``jaxsvd.deploy``) as a standalone inference artifact, with its executions chosen by measuring.

``autotune(folded, x)`` builds candidate plans ({layer: 'merged' | 'factored'}): 'auto' (channel-quantized
MACs), 'merged' (every layer one conv) and 'measured' (each SVD layer timed alone in both executions at the
batch's shapes, ``measured_plan``), pairs them with each XLA option set for inference
(``xla_options.candidate_options(inference=True)``) and times the whole model under each pair on real calls:
a layer that wins alone can lose inside the model's fusions.

``write(folded, plan, directory)`` serializes ``folded.apply`` with ``jax.export`` (StableHLO, symbolic batch
dimension ``b``, lowered for ``platforms``) and writes
  model.stablehlo   the serialized ``jax.export.Exported``: f(weights, images) -> logits
  weights.npz       its weights, one array per '/'-joined name (BatchNorms folded, executions fixed)
  meta.json         input shape, plan, the XLA:CPU options chosen, MACs, folded/kept norms, the architecture record
  deploy_runner.py  a copy of ``jaxsvd/deploy/runner.py``: loads and runs the three above with jax, numpy, flatbuffers
StableHLO carries no compiler options, so the options measured fastest are stored in meta.json and the runner
passes them to ``jax.jit`` on CPU.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.tree import leaves_by_path
from jaxsvd.core.validate import check_choice
from jaxsvd.deploy import runner as deploy_runner
from jaxsvd.deploy.folding import Folded, execution_weights, run_layer
from jaxsvd.training import xla_options

FORMAT = "jaxsvd-deploy-1"
CANDIDATES = ("auto", "merged", "measured")
FILES = ("model.stablehlo", "weights.npz", "meta.json", "deploy_runner.py")


_TUNED = "tuned"  # measured_plan's default: the options ``xla_options.jit`` compiles with


def measured_plan(folded: Folded, batch: int, repeats: int = 5, options: Any = _TUNED) -> dict[str, str]:
  """Each SVD layer's faster execution, timed alone on random inputs of its traced shape at ``batch``.

  Args:
    folded: the folded model.
    batch: the batch size to time at.
    repeats: timed calls per execution (median, after one warm-up call; the two executions alternate,
      ``xla_options.fastest``).
    options: the XLA compiler options to time under (default: ``xla_options.tuned_options()``); which execution
      wins depends on them (``xla_options.INFERENCE_CPU_OPTIONS``).

  Returns:
    {layer path: 'merged' | 'factored'} (dense layers: 'merged').
  """
  options = xla_options.tuned_options() if options is _TUNED else options
  plan = folded.plan("merged")
  rng = np.random.default_rng(0)
  for path in folded.ranks():
    site = folded.sites[path]
    x = jnp.asarray(rng.normal(size=(batch, *site.in_shape)), jnp.float32)
    layer = jax.jit(lambda w, x, site=site: run_layer(site, w, x), compiler_options=options)
    candidates = []
    for execution in ("merged", "factored"):
      w = {k: jnp.asarray(v, jnp.float32) for k, v in execution_weights(site, folded.layers[path], execution).items()}
      candidates.append((execution, functools.partial(layer, w)))
    plan[path], _ = xla_options.fastest(candidates, (x,), repeats)
  return plan


def candidate_plans(folded: Folded, batch: int, rules: Sequence[str] = CANDIDATES,
                    options: Any = _TUNED) -> dict[str, dict[str, str]]:
  """{rule: plan} for ``rules`` ⊆ ('auto', 'merged', 'factored', 'measured'), duplicates of an earlier plan dropped;
  'measured' is timed under ``options`` (``measured_plan``).

  Args:
    folded: the folded model.
    batch: the batch size 'measured' times its layers at.
    rules: the plan rules, in order of preference (an equal plan from a later rule is dropped).
    options: the XLA compiler options 'measured' times under (default: ``xla_options.tuned_options()``).

  Returns:
    {rule: {layer path: 'merged' | 'factored'}}, in the order of ``rules``, each plan distinct.

  Raises:
    ValueError: if a rule is not one of 'auto', 'merged', 'factored', 'measured'.
  """
  plans: dict[str, dict[str, str]] = {}
  for rule in rules:
    check_choice("plan rule", rule, (*CANDIDATES, "factored"))
    plan = measured_plan(folded, batch, options=options) if rule == "measured" else folded.plan(rule)
    if plan not in plans.values():
      plans[rule] = plan
  return plans


def autotune(folded: Folded, x: jax.Array, rules: Sequence[str] = CANDIDATES, trials: int = 3):
  """The fastest (plan, XLA options) for inputs shaped like ``x``, timed on whole-model calls.

  Every option set of ``xla_options.candidate_options(inference=True)`` is paired with the plans of ``rules``
  ('measured' timed under that set), each pair compiled for ``x``'s shape, and the pairs timed in turn on whole
  calls (``xla_options.fastest``): a layer that wins alone can lose inside the model's fusions.

  Args:
    folded: the folded model.
    x: a batch of inputs at the batch size to tune for.
    rules: the candidate plans (``candidate_plans``).
    trials: timed rounds per candidate (after one warm-up round).

  Returns:
    (rule name, plan, the XLA options (None: defaults), ``predict(images) -> logits`` jitted with them).
    Tuning compiles len(option sets) × len(plans) whole models and, for 'measured', times every SVD layer alone
    under each option set.
  """
  candidates = []
  for options in xla_options.candidate_options(inference=True):
    for rule, plan in candidate_plans(folded, x.shape[0], rules, options).items():
      weights = folded.weights(plan)
      compiled = jax.jit(folded.apply).lower(weights, x).compile(compiler_options=options)
      candidates.append(((rule, plan, options, weights), compiled))
  (rule, plan, options, weights), best = xla_options.fastest(
      [(key, functools.partial(compiled, key[3])) for key, compiled in candidates], (x,), trials)
  apply = jax.jit(folded.apply, compiler_options=options)

  def predict(images):  # the tuned executable at x's shape; other shapes compile once more, with the same options
    same = jnp.shape(images) == x.shape and jnp.result_type(images) == x.dtype
    return best(images) if same else apply(weights, images)

  return rule, plan, options, predict


def flat_weights(weights: Mapping) -> dict[str, np.ndarray]:
  """The nested weights as {'/'-joined name: host array} (the npz and the exported function's argument).

  Args:
    weights: the nested weights pytree (e.g. ``Folded.weights(plan)``).

  Returns:
    {'/'-joined leaf path: float32 NumPy array}, in flattening order.
  """
  return {name: np.asarray(leaf, np.float32) for name, leaf in leaves_by_path(weights).items()}


def export(folded: Folded, plan: Mapping[str, str], platforms: Sequence[str] = ("cpu", "cuda")):
  """(``jax.export.Exported`` of ``f(flat weights, images)`` with a symbolic batch dimension, flat weights).

  Args:
    folded: the folded model.
    plan: {layer path: 'merged' | 'factored'} (``Folded.plan``).
    platforms: what the StableHLO is lowered for (jax.export multi-platform lowering).

  Returns:
    The ``Exported`` and the {name: array} weights it takes.
  """
  weights = folded.weights(plan)
  flat = flat_weights(weights)
  treedef = jax.tree.structure(weights)
  names = list(flat)

  def f(flat_in, images):
    return folded.apply(jax.tree.unflatten(treedef, [flat_in[n] for n in names]), images)

  (batch,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct((batch, *folded.input_shape), jnp.float32)
  arg_specs = {n: jax.ShapeDtypeStruct(a.shape, a.dtype) for n, a in flat.items()}
  return jax.export.export(jax.jit(f), platforms=tuple(platforms))(arg_specs, spec), flat


def write(folded: Folded, plan: Mapping[str, str], directory: str, xla: dict[str, Any] | None = None,
          platforms: Sequence[str] = ("cpu", "cuda"), extra_meta: Mapping[str, Any] | None = None) -> str:
  """Writes the artifact (``FILES``, see the module doc) to ``directory`` (created; existing files replaced).

  Args:
    folded: the folded model.
    plan: {layer path: 'merged' | 'factored'}.
    directory: where to write.
    xla: the XLA:CPU compiler options the runner should use (e.g. ``autotune``'s), or None.
    platforms: the platforms the StableHLO is lowered for.
    extra_meta: more JSON-able entries for meta.json (e.g. the architecture record, a verification result).

  Returns:
    ``directory``.
  """
  exported, flat = export(folded, plan, platforms)
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "model.stablehlo"), "wb") as f:
    f.write(exported.serialize())
  np.savez(os.path.join(directory, "weights.npz"), **flat)
  meta = {"format": FORMAT, "input_shape": list(folded.input_shape), "dtype": "float32", "batch": "symbolic",
          "platforms": list(platforms), "plan": dict(plan), "xla_options": xla, "macs_executed": folded.macs(plan),
          "folded_norms": folded.folded_norms, "kept_norms": folded.kept_norms, **dict(extra_meta or {})}
  write_meta(directory, meta)
  shutil.copyfile(deploy_runner.__file__, os.path.join(directory, "deploy_runner.py"))
  return directory


def read_meta(directory: str) -> dict:
  """The artifact's meta.json.

  Args:
    directory: the artifact directory.

  Returns:
    The parsed ``meta.json`` (a dict).
  """
  with open(os.path.join(directory, "meta.json")) as f:
    return json.load(f)


def write_meta(directory: str, meta: Mapping[str, Any]) -> None:
  """Writes ``meta`` as the artifact's meta.json.

  Args:
    directory: the artifact directory (it must exist); an existing meta.json is overwritten.
    meta: the JSON-able entries to write.
  """
  with open(os.path.join(directory, "meta.json"), "w") as f:
    json.dump(dict(meta), f, indent=1)


def load(directory: str):
  """``predict(images) -> logits`` from an artifact directory (``jaxsvd.deploy.runner.load``: jax, numpy, flatbuffers).

  Args:
    directory: the artifact directory (written by ``write``).

  Returns:
    ``predict(images) -> logits`` for float32 images of shape (batch, *meta['input_shape']), any batch size.
  """
  return deploy_runner.load(directory)


__all__ = ["FORMAT", "CANDIDATES", "FILES", "measured_plan", "candidate_plans", "autotune", "flat_weights", "export",
           "write", "read_meta", "write_meta", "load"]
