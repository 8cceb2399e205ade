import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd.core import regularizers as R
from jaxsvd.linen.layers import ConvSVD, DenseSVD
from jaxsvd.training.losses import RegularizerConfig, make_loss_fn


class TinyNet(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = ConvSVD(6, rank=4)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return DenseSVD(5)(nn.relu(x).mean((1, 2)))


@pytest.fixture
def setup():
  model = TinyNet()
  batch = {"image": jax.random.normal(jax.random.key(0), (8, 6, 6, 3)),
           "label": jnp.arange(8) % 5}
  variables = model.init(jax.random.key(1), batch["image"])
  return model, variables["params"], {"batch_stats": variables["batch_stats"]}, batch


def test_loss_is_ce_plus_weighted_terms(setup):
  model, params, state, batch = setup
  reg = RegularizerConfig(orthogonality=0.5, sparsity=0.01, sparsity_type="hoyer_square")
  loss, (metrics, new_state) = make_loss_fn(model.apply, reg)(params, state, batch)
  logits, _ = model.apply({"params": params, **state}, batch["image"], train=True, mutable=["batch_stats"])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
  expected = ce + 0.5 * R.total_orthogonality(params) + 0.01 * R.total_sparsity(params, "hoyer_square")
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert set(metrics) == {"ce", "orth", "sparsity", "accuracy", "loss"}
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, new_state, state))


def test_jit_equals_eager(setup):
  model, params, state, batch = setup
  fn = make_loss_fn(model.apply, RegularizerConfig(orthogonality=1.0, sparsity=1e-3))
  grad_fn = jax.value_and_grad(fn, has_aux=True)
  chex.assert_trees_all_close(jax.jit(grad_fn)(params, state, batch), grad_fn(params, state, batch), atol=1e-5, rtol=1e-5)


def _primitive_counts(jaxpr) -> dict[str, int]:
  counts: dict[str, int] = {}

  def sub_jaxprs(params):
    for value in params.values():
      for item in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(item, "jaxpr", item)  # ClosedJaxpr -> Jaxpr
        if hasattr(inner, "eqns"):
          yield inner

  def walk(jx):
    for eqn in jx.eqns:
      name = eqn.primitive.name
      name = "custom_vjp_call" if name.startswith("custom_vjp_call") else name  # 'custom_vjp_call_jaxpr' in older jax
      counts[name] = counts.get(name, 0) + 1
      for sub in sub_jaxprs(eqn.params):
        walk(sub)

  walk(jaxpr.jaxpr)
  return counts


def test_zero_lambdas_are_not_traced(setup):
  """With λ = 0 the loss's jaxpr has exactly the matmuls/convs/reductions of forward + CE, nothing more."""
  model, params, state, batch = setup
  loss_fn = make_loss_fn(model.apply, RegularizerConfig(), train=False)
  _, (metrics, _) = loss_fn(params, state, batch)
  assert "orth" not in metrics and "sparsity" not in metrics

  def forward_and_ce(p):
    logits = model.apply({"params": p, **state}, batch["image"], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  heavy = ("dot_general", "conv_general_dilated", "custom_vjp_call", "sqrt", "abs")
  zero = _primitive_counts(jax.make_jaxpr(lambda p: loss_fn(p, state, batch)[0])(params))
  reference = _primitive_counts(jax.make_jaxpr(forward_and_ce)(params))
  assert {k: zero.get(k, 0) for k in heavy} == {k: reference.get(k, 0) for k in heavy}
  with_reg = make_loss_fn(model.apply, RegularizerConfig(orthogonality=1.0, sparsity=0.1), train=False)
  on = _primitive_counts(jax.make_jaxpr(lambda p: with_reg(p, state, batch)[0])(params))
  assert on.get("custom_vjp_call", 0) > 0 and on["dot_general"] > reference["dot_general"]


def test_mask_ignores_padded_examples(setup):
  model, params, state, batch = setup
  fn = make_loss_fn(model.apply, RegularizerConfig(), train=False)
  masked = dict(batch, mask=jnp.array([1.0] * 4 + [0.0] * 4))
  half = jax.tree.map(lambda a: a[:4], batch)
  np.testing.assert_allclose(fn(params, state, masked)[0], fn(params, state, half)[0], rtol=1e-5)


@pytest.mark.parametrize("field", ["orthogonality", "sparsity", "l2"])
def test_negative_lambda_raises(field):
  with pytest.raises(ValueError, match=field):
    RegularizerConfig(**{field: -1.0})


def test_unknown_sparsity_type_raises():
  with pytest.raises(ValueError, match="hoyer"):
    RegularizerConfig(sparsity_type="l0")


@pytest.mark.parametrize("every", [0, 2.0, True])
def test_every_must_be_a_positive_int(every):
  with pytest.raises(ValueError, match="every must be an int >= 1"):
    RegularizerConfig(orthogonality=1.0, every=every)
  with pytest.raises(ValueError, match="reg.every must be an int >= 1"):
    RegularizerConfig.from_config({"orthogonality": 1.0, "every": every}, "reg")


def _sgd_deltas(model, params, state, batch, reg, steps):
  """Param changes of ``steps`` plain-SGD (lr 1) train steps: each is −grad of that step."""
  from jaxsvd.training.train_state import TrainState, train_step

  ts = TrainState.create(model.apply, {"params": params, **state}, optax.sgd(1.0))
  step = jax.jit(train_step, static_argnums=(2,))
  deltas, all_metrics = [], []
  for _ in range(steps):
    new, metrics = step(ts, batch, reg)
    deltas.append(jax.tree.map(jnp.subtract, new.params, ts.params))
    all_metrics.append(metrics)
    ts = new
  return deltas, all_metrics


def test_lazy_regularization_applies_every_times_the_terms_every_nth_step(setup):
  model, params, state, batch = setup
  every = 3
  lazy = RegularizerConfig(orthogonality=0.5, sparsity=0.01, l2=1e-3, every=every)
  deltas, metrics = _sgd_deltas(model, params, state, batch, lazy, steps=4)
  ce_only, _ = _sgd_deltas(model, params, state, batch, RegularizerConfig(l2=1e-3), steps=1)
  reg_grads = jax.grad(lambda p: 0.5 * R.total_orthogonality(p) + 0.01 * R.total_sparsity(p))(params)
  # Step 0 regularizes with weight `every`; l2 is applied on every step.
  expected = jax.tree.map(lambda c, g: c - every * g, ce_only[0], reg_grads)
  chex.assert_trees_all_close(deltas[0], expected, atol=1e-5, rtol=1e-4)
  assert float(metrics[0]["orth"]) == pytest.approx(every * float(R.total_orthogonality(params)), rel=1e-5)
  for k in (1, 2):
    assert float(metrics[k]["orth"]) == 0.0 and float(metrics[k]["sparsity"]) == 0.0
  assert float(metrics[3]["orth"]) > 0.0  # step 3 = the next multiple of `every`


def test_lazy_off_steps_equal_unregularized_steps(setup):
  from jaxsvd.training.train_state import TrainState, train_step

  model, params, state, batch = setup
  lazy = RegularizerConfig(orthogonality=0.5, sparsity=0.01, every=2)
  step = jax.jit(train_step, static_argnums=(2,))
  off_step = TrainState.create(model.apply, {"params": params, **state}, optax.sgd(1.0)).replace(
      step=jnp.ones((), jnp.int32))
  lazy_new, lazy_metrics = step(off_step, batch, lazy)
  plain_new, plain_metrics = step(off_step, batch, RegularizerConfig())
  chex.assert_trees_all_close(lazy_new.params, plain_new.params, atol=1e-6)
  np.testing.assert_allclose(lazy_metrics["loss"], plain_metrics["loss"], rtol=1e-6)


def test_every_one_is_the_plain_objective():
  reg = RegularizerConfig(orthogonality=1.0, sparsity=0.1)
  assert reg.split_lazy() == (reg, None)
  step, lazy = RegularizerConfig(orthogonality=1.0, l2=0.1, every=4).split_lazy()
  assert (step.orthogonality, step.l2, lazy.orthogonality, lazy.l2, lazy.every) == (0.0, 0.1, 1.0, 0.0, 4)
