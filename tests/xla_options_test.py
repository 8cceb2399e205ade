"""The tuned XLA options: applied only where valid, and the train step computes the same numbers."""

import chex
import jax
import numpy as np
import pytest

from jaxsvd import xla_options
from jaxsvd.losses import RegularizerConfig
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.optim import make_optimizer
from jaxsvd.train_state import TrainState, eval_step, train_step


def small_state():
  model = build_model("resnet8", 10, SVDSpec())
  variables = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))
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
