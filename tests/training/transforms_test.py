"""``add_svd_regularization`` placed first in an optax chain gives the updates of the regularized-loss path."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training import add_svd_regularization
from jaxsvd.training.losses import RegularizerConfig, make_loss_fn, regularization

REG = RegularizerConfig(orthogonality=1.0, sparsity=0.01, sparsity_type="hoyer_square", l2=1e-4)


def _setup():
  model = build_model("resnet8", 10, SVDSpec())
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(8, 16, 16, 1)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  variables = model.init(jax.random.key(0), batch["image"])
  params, state = variables.pop("params"), variables
  return model, params, state, batch


def _run(tx, loss_fn, params, state, batch, steps, lazy_every=None, lazy_reg=None):
  """``steps`` updates of ``tx`` on ``loss_fn``'s gradients (plus, for the reference of lazy regularization, N·∇R
  on every N-th step); returns the params after each step."""
  opt_state, out = tx.init(params), []
  for step in range(steps):
    grads = jax.grad(lambda p: loss_fn(p, state, batch)[0])(params)
    if lazy_every and step % lazy_every == 0:
      extra = jax.grad(lambda p: lazy_every * regularization(p, lazy_reg)[0])(params)
      grads = jax.tree.map(jnp.add, grads, extra)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    out.append(params)
  return out


@pytest.mark.parametrize("optimizer", [optax.sgd(0.05, momentum=0.9), optax.adam(1e-2)], ids=["sgd", "adam"])
def test_first_in_the_chain_equals_the_regularized_loss(optimizer):
  model, params, state, batch = _setup()
  plain = make_loss_fn(model.apply, RegularizerConfig(), train=False)  # the user's own loss: CE only
  regularized = make_loss_fn(model.apply, REG, train=False)            # jaxsvd's loss path
  reference = _run(optimizer, regularized, params, state, batch, 3)
  chained = _run(optax.chain(add_svd_regularization(REG), optimizer), plain, params, state, batch, 3)
  chex.assert_trees_all_close(chained, reference, rtol=1e-6, atol=1e-7)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), chained[-1], params)
  assert max(jax.tree.leaves(moved)) > 1e-3  # the steps did something


def test_lazy_regularization_every_second_update():
  model, params, state, batch = _setup()
  lazy = RegularizerConfig(orthogonality=1.0, sparsity=0.01, every=2)
  plain = make_loss_fn(model.apply, RegularizerConfig(), train=False)
  reference = _run(optax.sgd(0.05), plain, params, state, batch, 4, lazy_every=2, lazy_reg=lazy.split_lazy()[1])
  chained = _run(optax.chain(add_svd_regularization(lazy), optax.sgd(0.05)), plain, params, state, batch, 4)
  chex.assert_trees_all_close(chained, reference, rtol=1e-6, atol=1e-7)


def test_update_without_params_is_one_line():
  tx = add_svd_regularization(REG)
  with pytest.raises(ValueError, match="add_svd_regularization needs params"):
    tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
