"""Optimizer-state surgery: the state of a chain with ``keep_pruned`` appended (the rank-prune policies are tested
with rank pruning, tests/pruning/rank_test.py)."""

import chex
import jax.numpy as jnp
import numpy as np
import optax

from jaxsvd.pruning import masks as M
from jaxsvd.pruning.opt_state import with_keep_pruned

PARAMS = {"a": {"kernel": jnp.arange(1.0, 7.0).reshape(2, 3)}, "b": {"bias": jnp.ones(3)}}
MASK = np.array([[True, False, True], [False, True, True]])


def test_with_keep_pruned_is_the_chained_state_with_the_base_state_kept():
  tx = optax.sgd(0.1, momentum=0.9)
  grads = {"a": {"kernel": jnp.full((2, 3), 2.0)}, "b": {"bias": jnp.full(3, 3.0)}}
  _, state = tx.update(grads, tx.init(PARAMS), PARAMS)
  new = with_keep_pruned(state, {"a/kernel": MASK})
  chained = optax.chain(tx, M.keep_pruned({"a/kernel": MASK}))
  chex.assert_trees_all_equal_structs(new, chained.init(PARAMS))
  chex.assert_trees_all_equal(new[0], state)  # the momentum goes on
  chex.assert_type(new[1].masks["a/kernel"], bool)
  np.testing.assert_array_equal(new[1].masks["a/kernel"], MASK)
  updates, _ = chained.update(grads, new, PARAMS)
  trace = 0.9 * 2.0 + 2.0  # the kept momentum: μ·g + g, then −lr
  np.testing.assert_allclose(updates["a"]["kernel"], np.where(MASK, -0.1 * trace, 0.0), rtol=1e-6)
  np.testing.assert_allclose(updates["b"]["bias"], np.full(3, -0.1 * (0.9 * 3.0 + 3.0)), rtol=1e-6)
