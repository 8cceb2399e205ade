"""The tuned XLA options: applied only where valid, and the train step computes the same numbers."""

import chex
import jax
import numpy as np
import pytest

from jaxsvd import pruning
from jaxsvd.linen.modes import in_mode
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training import xla_options
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.optim import make_optimizer
from jaxsvd.training.train_state import EVAL_VARIANTS, TrainState, eval_step, train_step

SVD = SVDSpec()


def small_state(svd: SVDSpec | None = SVD, reduce_by: float | None = None):
  model = build_model("resnet8", 10, svd)
  variables = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
  if reduce_by is not None:  # pruned: `auto` then runs some layers factored, `reconstruct` none
    params, ranks, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=reduce_by))
    model, variables = build_model("resnet8", 10, svd, ranks=ranks), {**variables, "params": params}
  tx = make_optimizer(dict(optimizer="sgd", learning_rate=0.05, momentum=0.9), variables["params"], 10, 1)
  return TrainState.create(model.apply, variables, tx)


def test_tuned_options_on_cpu_and_accepted_by_this_jaxlib():
  assert jax.default_backend() == "cpu"
  assert xla_options.tuned_options() == xla_options.CPU_OPTIONS


def test_train_and_eval_steps_match_xla_defaults():
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(8, 16, 16, 3)).astype(np.float32), "label": rng.integers(0, 10, 8).astype(np.int32)}
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
  results = []
  for jit in (jax.jit, xla_options.jit):
    state = small_state()
    step = jit(train_step, static_argnums=(2,))
    for _ in range(3):
      state, metrics = step(state, batch, reg)
    results.append((state.params, metrics["loss"], jit(eval_step)(state, batch)))
  (p0, loss0, eval0), (p1, loss1, eval1) = results
  chex.assert_trees_all_close(p0, p1, atol=1e-5, rtol=1e-4)
  np.testing.assert_allclose(loss0, loss1, rtol=1e-5)
  chex.assert_trees_all_close(eval0, eval1, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("env", [{"JAXSVD_XLA_OPTIONS": "0"},
                                 {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_ELTWISE"}])
def test_opt_out_and_user_flags_win(monkeypatch, env):
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert xla_options.tuned_options() is None


def test_rejected_options_fall_back_to_defaults(monkeypatch, caplog):
  monkeypatch.setattr(xla_options, "CPU_OPTIONS", {"xla_cpu_no_such_option_for_test": "1"})
  assert xla_options.tuned_options() is None
  assert "not accepted" in caplog.text
  np.testing.assert_allclose(xla_options.jit(lambda x: x * 2)(np.ones(3, np.float32)), 2.0)


def test_autotuned_jit_traces_once_per_signature_and_matches_jit():
  state = small_state()
  batch = {"image": np.ones((4, 16, 16, 3), np.float32), "label": np.zeros(4, np.int32)}
  half = {"image": batch["image"][:2], "label": batch["label"][:2]}
  traces = []

  def counted(state, batch):
    traces.append(1)
    return eval_step(state, batch)

  tuned = xla_options.autotuned_jit(counted, trials=1)
  outs = [tuned(state, batch) for _ in range(4)]  # 2 rounds (warm-up + 1 timed) over ≤ 2 candidates
  reference = jax.jit(eval_step)(state, batch)
  for out in outs:
    chex.assert_trees_all_close(out, reference, atol=1e-4, rtol=1e-5)
  choice = list(tuned.choices.values())[0]
  assert len(traces) == 1 and choice.options in xla_options.candidate_options() and choice.variant == {}
  for _ in range(4):
    tuned(state, half)
  assert len(traces) == 2 and len(tuned.choices) == 2


def test_autotuned_jit_keeps_the_faster_candidate(monkeypatch):
  slow = {xla_options.YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_ELTWISE"}
  monkeypatch.setattr(xla_options, "candidate_options", lambda: [slow, None])
  # A fake clock in which every call of the first candidate takes 5 ticks and of the second 1.
  ticks, calls = {"t": 0.0}, []
  real_compile = jax.stages.Lowered.compile

  def compile_with_cost(self, compiler_options=None):
    executable, cost = real_compile(self, compiler_options=compiler_options), 5.0 if compiler_options else 1.0

    def run(*args):
      calls.append(cost)
      ticks["t"] += cost
      return executable(*args)

    return run

  monkeypatch.setattr(jax.stages.Lowered, "compile", compile_with_cost)
  monkeypatch.setattr(xla_options.time, "perf_counter", lambda: ticks["t"])
  fn = xla_options.autotuned_jit(lambda x: x * 2, trials=3)
  for i in range(8):  # 1 warm-up + 3 timed rounds over the 2 candidates: every call is a real one
    np.testing.assert_allclose(fn(np.full(3, i, np.float32)), 2.0 * i)
  assert calls == [5.0, 1.0] * 4 and list(fn.choices.values()) == [xla_options.Choice({}, None)]
  fn(np.ones(3, np.float32))
  assert calls[-1] == 1.0 and len(calls) == 9


def test_autotuned_train_step_with_donation_matches_jit():
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(8, 16, 16, 3)).astype(np.float32), "label": rng.integers(0, 10, 8).astype(np.int32)}
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3)
  results = []
  for step in (jax.jit(train_step, static_argnums=(2,)),
               xla_options.autotuned_jit(train_step, static_argnums=(2,), donate_argnums=(0,), trials=1)):
    state = small_state()
    for _ in range(5):  # through the tuning rounds and past them
      state, metrics = step(state, batch, reg)
    results.append((state.params, metrics["loss"]))
  chex.assert_trees_all_close(results[0], results[1], atol=1e-5, rtol=1e-4)


def _eval_batch(n=4):
  rng = np.random.default_rng(1)
  return {"image": rng.normal(size=(n, 16, 16, 3)).astype(np.float32), "label": rng.integers(0, 10, n).astype(np.int32)}


@pytest.mark.parametrize("svd, reduce_by, variants",
                         [(SVDSpec(), 0.9, 2), (None, None, 1), (SVDSpec(mode="reconstruct"), 0.9, 1)])
def test_autotuned_eval_over_modes_matches_jit_and_compiles_distinct_programs_once(svd, reduce_by, variants):
  state, batch = small_state(svd, reduce_by), _eval_batch()
  tuned = xla_options.autotuned_jit(eval_step, variants=EVAL_VARIANTS, trials=1)
  reference = jax.jit(eval_step)(state, batch)
  candidates = variants * len(xla_options.candidate_options())
  for _ in range(2 * candidates):  # warm-up + 1 timed round over every distinct candidate
    assert not tuned.choices
    chex.assert_trees_all_close(tuned(state, batch), reference, atol=1e-4, rtol=1e-5)
  (choice,) = tuned.choices.values()
  assert choice.variant["mode"] in EVAL_VARIANTS["mode"] and choice.options in xla_options.candidate_options()
  chex.assert_trees_all_close(tuned(state, batch), reference, atol=1e-4, rtol=1e-5)


def test_autotuned_jit_picks_the_faster_variant(monkeypatch):
  monkeypatch.setattr(xla_options, "candidate_options", lambda: [None])
  ticks = {"t": 0.0}

  def fn(x, scale):  # variant `scale` 1 pretends to take 3 ticks, 2 takes 1 tick (via the host callback)
    jax.debug.callback(lambda s: ticks.__setitem__("t", ticks["t"] + (3.0 if s == 1 else 1.0)), scale)
    return x * 2 if scale == 1 else (x * scale) / scale * 2

  monkeypatch.setattr(xla_options.time, "perf_counter", lambda: ticks["t"])
  tuned = xla_options.autotuned_jit(fn, variants={"scale": (1, 2)}, trials=2)
  for i in range(7):
    np.testing.assert_allclose(tuned(np.full(3, i, np.float32)), 2.0 * i)
  assert list(tuned.choices.values()) == [xla_options.Choice({"scale": 2}, None)]


def test_in_mode_rebuilds_the_model_in_another_execution_mode():
  state, batch = small_state(SVDSpec(), 0.9), _eval_batch()
  reconstruct = in_mode(state.apply_fn, "reconstruct")
  assert reconstruct.__self__.svd.mode == "reconstruct" and in_mode(state.apply_fn, None) is state.apply_fn
  dense = small_state(None)
  assert in_mode(dense.apply_fn, "factored") is dense.apply_fn
  outs = [in_mode(state.apply_fn, m)(state.variables, batch["image"], train=False) for m in ("auto", "reconstruct",
                                                                                             "factored")]
  for out in outs[1:]:
    chex.assert_trees_all_close(out, outs[0], atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match="mode"):
    in_mode(state.apply_fn, "fast")


def test_inference_candidates_add_the_set_without_elementwise_fusions(monkeypatch):
  tuned, inference = xla_options.CPU_OPTIONS, xla_options.INFERENCE_CPU_OPTIONS
  assert xla_options.candidate_options(inference=True) == [tuned, inference, None]
  assert xla_options.candidate_options() == [tuned, None]
  assert [xla_options.describe(o) for o in (tuned, inference, None, {"x": "1"})] == [
      "tuned", "inference", "default", "custom"]
  fusions = set(inference[xla_options.YNN_FUSION_TYPE].split(","))
  assert fusions == set(tuned[xla_options.YNN_FUSION_TYPE].split(",")) - {"LIBRARY_FUSION_TYPE_ELTWISE"}
  monkeypatch.setenv("JAXSVD_XLA_OPTIONS", "0")
  assert xla_options.candidate_options(inference=True) == [None]


def test_fastest_times_every_candidate_on_real_calls_and_keeps_the_fastest(monkeypatch):
  ticks, calls = {"t": 0.0}, []

  def candidate(name, cost):
    def run(x):
      calls.append(name)
      ticks["t"] += cost
      return x
    return name, run

  monkeypatch.setattr(xla_options.time, "perf_counter", lambda: ticks["t"])
  key, fn = xla_options.fastest([candidate("a", 3.0), candidate("b", 1.0), candidate("c", 2.0)], (np.ones(2),), 2)
  assert key == "b" and calls == ["a", "b", "c"] * 3  # 1 warm-up + 2 timed rounds
  assert xla_options.fastest([candidate("only", 1.0)], (np.ones(2),))[0] == "only"


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_on_gpu_and_tpu_nothing_cpu_specific_is_passed_and_nothing_autotuned(monkeypatch, backend):
  """With the default backend faked (the options are read per call, not cached) no XLA:CPU option reaches a
  compile: ``jit`` passes none, ``autotuned_jit`` compiles its first variant once with XLA's defaults and times
  nothing, even when given CPU option sets (as ``deploy.inference`` builds them on a CPU host)."""
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert xla_options.tuned_options() is None
  assert xla_options.candidate_options() == [None] == xla_options.candidate_options(inference=True)
  passed = []
  real_jit = jax.jit
  monkeypatch.setattr(jax, "jit", lambda fn, **kw: passed.append(kw.get("compiler_options")) or real_jit(fn, **kw))
  np.testing.assert_allclose(xla_options.jit(lambda x: x * 2)(np.ones(3, np.float32)), 2.0)
  assert passed == [None]
  compiled = []
  real_compile = jax.stages.Lowered.compile
  monkeypatch.setattr(jax.stages.Lowered, "compile",
                      lambda self, compiler_options=None: compiled.append(compiler_options) or real_compile(self))
  for options in (None, [dict(xla_options.CPU_OPTIONS), None]):
    f = xla_options.autotuned_jit(lambda x, scale=1.0: x * scale, variants={"scale": (1.0, 2.0)}, options=options)
    x = jax.numpy.ones(3)
    out = f(x)
    choice = next(iter(f.choices.values()))  # chosen at the first call: nothing timed
    assert len(f.choices) == 1 and choice == xla_options.Choice({"scale": 1.0}, None)
    np.testing.assert_allclose(f(x), out)
    np.testing.assert_allclose(out, 1.0)
  assert compiled == [None, None]  # one compile per autotuned_jit, with XLA's defaults


def test_platform_is_read_from_committed_arguments(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert xla_options.platform_of((np.ones(2), jax.numpy.ones(2))) == "gpu"  # uncommitted: the default backend
  assert xla_options.platform_of({"x": jax.device_put(np.ones(2), jax.devices("cpu")[0])}) == "cpu"
