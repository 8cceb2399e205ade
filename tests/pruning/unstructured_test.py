"""Unstructured pruning to a parameter count: the count, the fixed mask with its record and optimizer state, the
dynamic mask before it (NumPy references)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd.core.record import Architecture
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.pruning import dynamic, unstructured
from jaxsvd.pruning import masks as M

RNG = np.random.default_rng(0)
PARAMS = {"conv": {"kernel": RNG.normal(size=(3, 3, 2, 4)).astype(np.float32), "bias": np.ones(4, np.float32)},
          "bn": {"scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)},
          "dense": {"kernel": RNG.normal(size=(4, 3)).astype(np.float32), "bias": np.zeros(3, np.float32)}}
KERNELS = ("conv/kernel", "dense/kernel")  # 72 + 12 entries; P = 84 + 4 + 8 + 3 = 99
RECORD = Architecture("mlp", 3, (5, 5, 2))


def _reference_masks(params, k):
  """The k smallest |w| over the kernels, one global order (stable: ties to the lower index)."""
  leaves = leaves_by_path(params)
  flat = np.concatenate([np.abs(np.asarray(leaves[p])).ravel() for p in KERNELS])
  keep = np.ones(flat.size, bool)
  keep[np.argsort(flat, kind="stable")[:k]] = False
  out, start = {}, 0
  for p in KERNELS:
    n = np.size(leaves[p])
    out[p] = keep[start:start + n].reshape(np.shape(leaves[p]))
    start += n
  return out


def test_pruned_count_keeps_round_p_over_r_params():
  assert unstructured.pruned_count(PARAMS, 3.0) == (99 - 33, 84)
  assert unstructured.pruned_count(PARAMS, 1.0) == (0, 84)
  assert unstructured.pruned_count(PARAMS, 3.0, select=lambda p, w: p == "conv/kernel") == (66, 72)
  with pytest.raises(ValueError, match=r"masks.param_reduction=10.0 prunes 89 of 99 params.*only 84 entries"):
    unstructured.pruned_count(PARAMS, 10.0)


def test_prune_to_count_zeros_the_k_smallest_and_records_the_kept_entries():
  tx = optax.adam(1e-2)
  grads = jax.tree.map(lambda w: jnp.asarray(RNG.normal(size=np.shape(w)), jnp.float32), PARAMS)
  _, opt_state = tx.update(grads, tx.init(PARAMS), PARAMS)  # nonzero moments, count 1
  params, new_state, record, report = unstructured.prune_to_count(PARAMS, opt_state, RECORD, 3.0)
  expected = _reference_masks(PARAMS, 66)
  leaves, before = leaves_by_path(params), leaves_by_path(PARAMS)
  for p in KERNELS:
    np.testing.assert_array_equal(np.asarray(leaves[p]), np.where(expected[p], before[p], 0.0))
  for p in ("conv/bias", "bn/scale", "bn/bias", "dense/bias"):
    np.testing.assert_array_equal(np.asarray(leaves[p]), before[p])
  assert sum(int(np.count_nonzero(np.asarray(leaves[p]))) for p in KERNELS) == 84 - 66
  assert record.masks == {p: int(expected[p].sum()) for p in KERNELS} and RECORD.masks is None
  assert report == {"pruned": 66, "kernel_entries": 84, "kept": 18}
  base, kept = new_state
  chex.assert_trees_all_equal(base, opt_state)  # moments and count go on
  assert isinstance(kept, M.KeepPrunedState) and set(kept.masks) == set(KERNELS)
  for p in KERNELS:
    chex.assert_type(kept.masks[p], bool)
    np.testing.assert_array_equal(kept.masks[p], expected[p])
  # the state is the one of tx chained with keep_pruned over the record's leaves (as a resume rebuilds it)
  chained = optax.chain(tx, M.keep_pruned(unstructured.recorded_masks(params, record)))
  chex.assert_trees_all_equal_structs(chained.init(params), new_state)
  updates, _ = chained.update(grads, new_state, params)
  for p in KERNELS:
    assert not np.asarray(leaves_by_path(updates)[p])[~expected[p]].any()


def test_dynamic_apply_keeps_the_n_minus_k_largest_at_every_call():

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))

  x = RNG.normal(size=(2, 6)).astype(np.float32)
  model = MLP()
  variables = model.init(jax.random.key(0), x)
  k, n = unstructured.pruned_count(variables["params"], 2.0)
  apply = unstructured.dynamic_apply(model.apply, variables["params"], 2.0)
  assert apply == dynamic.MaskedApply(model.apply, n - k)
  leaves = leaves_by_path(variables["params"])
  kernels = [p for p in leaves if p.endswith("/kernel")]
  flat = np.concatenate([np.abs(np.asarray(leaves[p])).ravel() for p in kernels])
  t = np.sort(flat)[k]  # the (n − k)-th largest
  masked = jax.tree_util.tree_map_with_path(
      lambda kp, w: np.where(np.abs(w) >= t, w, 0.0) if kp[-1].key == "kernel" else w, variables["params"])
  np.testing.assert_allclose(apply(variables, x), model.apply({"params": masked}, x), rtol=1e-6)


def test_recorded_masks_and_counts_read_the_record():
  assert unstructured.recorded_masks(PARAMS, RECORD) is None and unstructured.counts(PARAMS, RECORD) == {}
  params, _, record, _ = unstructured.prune_to_count(PARAMS, (), RECORD, 3.0)
  masks = unstructured.recorded_masks(params, record)
  for p in KERNELS:
    np.testing.assert_array_equal(masks[p], np.asarray(leaves_by_path(params)[p]) != 0)
  assert unstructured.counts(params, record) == {"params_total": 99, "params_nonzero": 33, "masked_params_kept": 18}
