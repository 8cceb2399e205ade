import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd import regularizers as R
from jaxsvd.layers import ConvSVD, DenseSVD
from jaxsvd.losses import RegularizerConfig, make_loss_fn


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


def test_zero_lambdas_are_not_traced(setup):
  model, params, state, batch = setup
  _, (metrics, _) = make_loss_fn(model.apply, RegularizerConfig())(params, state, batch)
  assert "orth" not in metrics and "sparsity" not in metrics


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
