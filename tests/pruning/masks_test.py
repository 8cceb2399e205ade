"""Mask-based pruning: exact counts, the right entries (numpy references; torch.nn.utils.prune where installed)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd.pruning import masks as M
from jaxsvd.training.optim import l1_subgradient

RNG = np.random.default_rng(0)
W = RNG.normal(size=(6, 10)).astype(np.float32)
KERNEL = RNG.normal(size=(3, 3, 4, 8)).astype(np.float32)  # HWIO


def smallest(scores, k):
  return set(np.argsort(scores.ravel())[:k].tolist())


def test_l1_unstructured_prunes_the_smallest_and_again_a_fraction_of_the_rest():
  m1 = np.asarray(M.l1_unstructured(W, 0.3))
  assert (~m1).sum() == 18 and set(np.flatnonzero(~m1.ravel())) == smallest(np.abs(W), 18)
  m2 = np.asarray(M.l1_unstructured(W, 0.5, m1))  # half of the 42 still kept
  assert (~m2).sum() == 18 + 21 and not (m2 & ~m1).any()
  assert set(np.flatnonzero(~m2.ravel())) == smallest(np.abs(W), 39)
  assert (~np.asarray(M.l1_unstructured(W, 7))).sum() == 7


def test_ln_structured_prunes_whole_output_channels_by_norm():
  for n, norm in ((2, lambda c: np.sqrt((c**2).sum())), (1, lambda c: np.abs(c).sum()),
                  (np.inf, lambda c: np.abs(c).max())):
    mask = np.asarray(M.ln_structured(KERNEL, 0.25, n=n, axis=-1))
    norms = np.array([norm(KERNEL[..., o]) for o in range(8)])
    pruned = [o for o in range(8) if not mask[..., o].any()]
    assert sorted(pruned) == sorted(np.argsort(norms)[:2].tolist())
    assert all(mask[..., o].all() for o in range(8) if o not in pruned)
  first = M.ln_structured(KERNEL, 2)
  again = np.asarray(M.ln_structured(KERNEL, 0.5, mask=first))  # half of the 6 channels left: 3 more
  assert sum(not again[..., o].any() for o in range(8)) == 5


def test_global_unstructured_uses_one_threshold_over_all_kernels():
  params = {"a": {"kernel": W, "bias": np.zeros(10, np.float32)}, "b": {"kernel": KERNEL}}
  masks = M.global_unstructured(params, 0.4)
  assert set(masks) == {"a/kernel", "b/kernel"}
  scores = np.concatenate([np.abs(W).ravel(), np.abs(KERNEL).ravel()])
  kept = np.concatenate([np.asarray(masks["a/kernel"]).ravel(), np.asarray(masks["b/kernel"]).ravel()])
  k = round(0.4 * scores.size)
  assert set(np.flatnonzero(~kept)) == smallest(scores, k)
  more = M.global_unstructured(params, 0.5, masks)
  assert M.sparsity(more)["total"] == pytest.approx((k + round(0.5 * (scores.size - k))) / scores.size)


def test_random_unstructured_exact_count_and_seeded():
  a, b = (np.asarray(M.random_unstructured(jax.random.key(s), W, 0.5)) for s in (0, 1))
  assert (~a).sum() == (~b).sum() == 30 and (a != b).any()
  np.testing.assert_array_equal(a, M.random_unstructured(jax.random.key(0), W, 0.5))


def test_layerwise_make_permanent_and_sparsity():
  params = {"Dense_0": {"kernel": W, "bias": np.ones(10, np.float32)}}
  masks = M.layerwise(params, lambda w, m: M.l1_unstructured(w, 0.5, m))
  pruned = M.make_permanent(params, masks)
  assert int(np.sum(np.asarray(pruned["Dense_0"]["kernel"]) == 0)) == 30
  chex.assert_trees_all_equal(pruned["Dense_0"]["bias"], params["Dense_0"]["bias"])
  assert M.sparsity(masks) == {"Dense_0/kernel": 0.5, "total": 0.5}


def test_keep_pruned_keeps_zeros_under_momentum_and_weight_decay():
  params = {"Dense_0": {"kernel": jnp.asarray(W)}}
  masks = {"Dense_0/kernel": M.l1_unstructured(W, 0.5)}
  params = M.make_permanent(params, masks)
  tx = optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.1, momentum=0.9), M.keep_pruned(masks))
  state = tx.init(params)
  loss = lambda p: jnp.sum((p["Dense_0"]["kernel"] - 1.0) ** 2)
  for _ in range(5):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  kernel, keep = np.asarray(params["Dense_0"]["kernel"]), np.asarray(masks["Dense_0/kernel"])
  assert (kernel[~keep] == 0).all() and (kernel[keep] != np.asarray(W)[keep]).all()
  state = optax.tree_utils.tree_set(state, masks={"Dense_0/kernel": jnp.ones_like(keep)})  # unprune all
  updates, _ = tx.update(jax.grad(loss)(params), state, params)
  assert (np.asarray(updates["Dense_0"]["kernel"]) != 0).all()


@pytest.mark.parametrize("amount", [1.5, -0.1, 61, True, "half"])
def test_bad_amounts_are_one_line_errors(amount):
  with pytest.raises(ValueError, match="amount"):
    M.l1_unstructured(W, amount)


def test_masks_must_match_params():
  params = {"Dense_0": {"kernel": W}}
  with pytest.raises(ValueError, match="no leaf"):
    M.make_permanent(params, {"Dense_1/kernel": np.ones_like(W, bool)})
  with pytest.raises(ValueError, match="has shape"):
    M.keep_pruned({"Dense_0/kernel": np.ones((2, 2), bool)}).init(params)
  with pytest.raises(ValueError, match="n must be"):
    M.ln_structured(KERNEL, 0.5, n=0)


def test_same_masks_as_torch_prune():
  torch = pytest.importorskip("torch")
  prune = pytest.importorskip("torch.nn.utils.prune")
  linear = torch.nn.Linear(10, 6)
  linear.weight.data = torch.from_numpy(W.copy())
  prune.l1_unstructured(linear, "weight", 0.3)
  prune.l1_unstructured(linear, "weight", 0.5)
  ours = M.l1_unstructured(W, 0.5, M.l1_unstructured(W, 0.3))
  np.testing.assert_array_equal(linear.weight_mask.numpy().astype(bool), ours)
  conv = torch.nn.Conv2d(4, 8, 3)
  conv.weight.data = torch.from_numpy(KERNEL.transpose(3, 2, 0, 1).copy())  # OIHW
  prune.ln_structured(conv, "weight", 0.25, n=2, dim=0)
  prune.ln_structured(conv, "weight", 0.5, n=1, dim=0)
  ours = M.ln_structured(KERNEL, 0.5, n=1, mask=M.ln_structured(KERNEL, 0.25, n=2))
  np.testing.assert_array_equal(conv.weight_mask.numpy().astype(bool), np.asarray(ours).transpose(3, 2, 0, 1))


def test_l1_subgradient_adds_lambda_sign_times_mask_numpy_reference():
  params = {"bn": {"scale": np.array([0.5, -2.0, 0.0], np.float32), "bias": np.ones(3, np.float32)},
            "w": W}
  grads = jax.tree.map(lambda p: np.full(np.shape(p), 0.25, np.float32), params)
  entry_mask = np.array([True, True, False])
  tx = l1_subgradient(0.1, {"bn/scale": entry_mask, "w": True})
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["bn"]["scale"], 0.25 + 0.1 * np.sign(params["bn"]["scale"]) * entry_mask)
  np.testing.assert_allclose(updates["w"], 0.25 + 0.1 * np.sign(W))
  np.testing.assert_array_equal(updates["bn"]["bias"], grads["bn"]["bias"])  # no mask: unchanged
  with pytest.raises(ValueError, match="mask for 'nope' has no leaf"):
    l1_subgradient(0.1, {"nope": True}).update(grads, optax.EmptyState(), params)


def test_select_and_label_fn_meet_optax_partition():
  params = {"a": {"gate": np.ones(3, np.float32), "kernel": np.ones((2, 3), np.float32)}}
  masks = M.select(params, lambda path, leaf: path.endswith("/gate"))
  assert masks == {"a/gate": True}
  tx = optax.multi_transform({"on": optax.sgd(1.0), "off": optax.set_to_zero()}, M.label_fn(masks, "on", "off"))
  grads = jax.tree.map(np.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["a"]["gate"], -np.ones(3))
  np.testing.assert_array_equal(updates["a"]["kernel"], np.zeros((2, 3)))


def test_whole_leaf_bool_masks_are_the_same_convention_everywhere():
  params = {"Dense_0": {"kernel": W}, "b": {"kernel": KERNEL}}
  np.testing.assert_array_equal(M.l1_unstructured(W, 0.3, True), M.l1_unstructured(W, 0.3))
  with_bool = M.global_unstructured(params, 0.4, M.select(params, M.is_kernel))
  chex.assert_trees_all_equal(with_bool, M.global_unstructured(params, 0.4))
  chex.assert_trees_all_equal(M.make_permanent(params, {"b/kernel": False})["b"]["kernel"], np.zeros_like(KERNEL))
  state = M.keep_pruned({"Dense_0/kernel": True}).init(params)
  chex.assert_shape(state.masks["Dense_0/kernel"], W.shape)
  with pytest.raises(ValueError, match="whole-leaf bools"):
    M.sparsity({"Dense_0/kernel": True})
