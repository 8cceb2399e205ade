import chex
import jax
import jax.numpy as jnp
import optax
import pytest

from jaxsvd.training import optim


def toy_params():
  return {"svd": {"U": jnp.ones((4, 2)), "s": jnp.ones(2), "V": jnp.ones((3, 2))},
          "bn": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
          "dense": {"kernel": jnp.ones((3, 3))}}


def test_labels_by_structure():
  labels = optim.param_labels(toy_params())
  assert labels["svd"] == {"U": "uv", "s": "s", "V": "uv"}
  assert labels["bn"] == {"scale": "norm_bias", "bias": "norm_bias"}
  assert labels["dense"]["kernel"] == "other"


def test_each_group_uses_its_own_learning_rate():
  lrs = {"uv": 0.1, "s": 0.01, "norm_bias": 0.5, "other": 2.0}
  cfg = dict(optimizer="sgd", momentum=0.0, learning_rate=1.0,
             groups={g: {"learning_rate": lr} for g, lr in lrs.items()})
  params = toy_params()
  tx = optim.make_optimizer(cfg, params, steps_per_epoch=10, num_epochs=1)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  labels = optim.param_labels(params)
  expected = jax.tree.map(lambda g, label: -lrs[label] * g, grads, labels)
  chex.assert_trees_all_close(updates, expected)


def test_weight_decay_per_group():
  cfg = dict(optimizer="sgd", momentum=0.0, learning_rate=1.0, weight_decay=0.1, groups={"s": {"weight_decay": 0.0}})
  params = toy_params()
  tx = optim.make_optimizer(cfg, params, 1, 1)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  chex.assert_trees_all_close(updates["svd"]["s"], jnp.zeros(2))
  chex.assert_trees_all_close(updates["svd"]["U"], -0.1 * jnp.ones((4, 2)))


def test_schedules_against_hand_values():
  sched = lambda **kw: optim.make_schedule(dict(learning_rate=1.0, **kw), steps_per_epoch=10, num_epochs=10)
  multistep = sched(schedule="multistep", milestones=(0.5, 0.75), decay_factor=0.1)
  assert [float(multistep(s)) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
  inverse = sched(schedule="inverse_epoch")
  assert [float(inverse(s)) for s in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.5, 1 / 3])
  linear = sched(schedule="linear")
  assert [float(linear(s)) for s in (0, 50, 100)] == pytest.approx([1, 0.5, 0])
  cosine = sched(schedule="cosine")
  assert float(cosine(50)) == pytest.approx(0.5, abs=1e-6)
  warm = sched(schedule="constant", warmup_epochs=2)
  assert [float(warm(s)) for s in (0, 10, 20, 90)] == pytest.approx([0, 0.5, 1, 1])


def test_bn_l1_is_the_subgradient_on_norm_layer_gammas_only():
  params = {"bn": {"scale": jnp.array([2.0, -1.0, 0.0]), "bias": jnp.array([1.0, 1.0, 1.0])},
            "k": {"kernel": jnp.array([[-3.0]])}, "ln": {"scale": jnp.array([4.0])}}  # no bias: not a norm layer
  tx = optim.make_optimizer(dict(optimizer="sgd", learning_rate=1.0, momentum=0.0, bn_l1=0.5), params, 1, 1)
  g = jax.tree.map(jnp.zeros_like, params)
  out, _ = tx.update(g, tx.init(params), params)
  expected = jax.tree.map(jnp.zeros_like, params)
  expected["bn"]["scale"] = -0.5 * jnp.sign(params["bn"]["scale"])  # sgd: −lr·λ·sign(γ)
  chex.assert_trees_all_close(out, expected)


@pytest.mark.parametrize("kind, reference", [
    ("norm", optax.clip_by_global_norm(1.0)), ("value", optax.clip(1.0)), ("adaptive", optax.adaptive_grad_clip(1.0))])
def test_clipping_matches_optax(kind, reference):
  params = toy_params()
  grads = jax.tree.map(lambda p: 5.0 * jnp.ones_like(p), params)
  ours, _ = optim.clipping(dict(clip=kind, clip_value=1.0)).update(grads, optax.EmptyState(), params)
  theirs, _ = reference.update(grads, reference.init(params), params)
  chex.assert_trees_all_close(ours, theirs)


@pytest.mark.parametrize("cfg, match", [
    (dict(optimizer="lion"), "optimizer"), (dict(schedule="step"), "schedule"), (dict(clip="l2"), "clip"),
    (dict(weight_decay=-1.0), "weight_decay"), (dict(groups={"bn": {}}), "groups"),
    (dict(groups={"s": {"learning_rate": -1}}), "learning_rate")])
def test_bad_config_raises(cfg, match):
  with pytest.raises(ValueError, match=match):
    optim.validate(cfg)


def test_adam_group_trains_a_quadratic():
  params = toy_params()
  tx = optim.make_optimizer(dict(optimizer="adam", learning_rate=0.1), params, 1, 100)
  state = tx.init(params)
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  for _ in range(100):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 1e-2
