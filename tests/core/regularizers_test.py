import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core import regularizers as R


def np_orth(U, V):
  r = U.shape[1]
  return (np.linalg.norm(U.T @ U - np.eye(r)) ** 2 + np.linalg.norm(V.T @ V - np.eye(r)) ** 2) / r**2


def test_values_match_numpy_reference():
  rng = np.random.default_rng(0)
  U, V, s = rng.normal(size=(12, 5)), rng.normal(size=(9, 5)), rng.normal(size=5)
  np.testing.assert_allclose(R.orthogonality(jnp.asarray(U), jnp.asarray(V)), np_orth(U, V), rtol=1e-4)
  l1, l2 = np.abs(s).sum(), np.sqrt((s**2).sum())
  np.testing.assert_allclose(R.hoyer(jnp.asarray(s)), l1 / l2, rtol=1e-5)
  np.testing.assert_allclose(R.hoyer_square(jnp.asarray(s)), l1**2 / l2**2, rtol=1e-5)
  np.testing.assert_allclose(R.l1(jnp.asarray(s)), l1, rtol=1e-5)


def test_hand_made_inputs():
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 3)))
  assert float(R.orthogonality(jnp.asarray(q), jnp.eye(3))) == pytest.approx(0.0, abs=1e-10)
  one_hot = jnp.array([0.0, 3.0, 0.0])
  assert float(R.hoyer(one_hot)) == pytest.approx(1.0)
  assert float(R.hoyer_square(one_hot)) == pytest.approx(1.0)
  equal = jnp.ones(4)
  assert float(R.hoyer(equal)) == pytest.approx(2.0)  # √r for equal values
  assert float(R.hoyer_square(equal)) == pytest.approx(4.0)
  # U = 2·I: UᵀU − I = 3I → 9r; V = I → 0.
  assert float(R.orthogonality(2 * jnp.eye(3), jnp.eye(3))) == pytest.approx(9 * 3 / 9)


@pytest.mark.parametrize("name", ["hoyer", "hoyer_square", "l1"])
def test_finite_value_and_gradient_at_zero(name):
  fn = R.sparsity_fn(name)
  value, grad = jax.value_and_grad(fn)(jnp.zeros(6))
  chex.assert_tree_all_finite((value, grad))
  assert float(value) == 0.0


def test_tree_sums_find_layers_by_structure():
  rng = np.random.default_rng(2)
  layer = lambda m, k, r: {"U": jnp.asarray(rng.normal(size=(m, r))), "s": jnp.asarray(rng.normal(size=r)),
                           "V": jnp.asarray(rng.normal(size=(k, r)))}
  a, b = layer(6, 4, 3), layer(5, 7, 2)
  params = {"encoder": {"my_weird_name": a, "BatchNorm_0": {"scale": jnp.ones(3)}},
            "head": {"inner": b, "kernel": jnp.ones((2, 2))}}
  expected_o = np_orth(np.asarray(a["U"]), np.asarray(a["V"])) + np_orth(np.asarray(b["U"]), np.asarray(b["V"]))
  np.testing.assert_allclose(R.total_orthogonality(params), expected_o, rtol=1e-4)
  np.testing.assert_allclose(R.total_sparsity(params, "l1"), np.abs(a["s"]).sum() + np.abs(b["s"]).sum(), rtol=1e-5)


def test_unknown_regularizer():
  with pytest.raises(ValueError, match="sparsity regularizer"):
    R.sparsity_fn("l0")


def test_orthogonality_gradient_matches_autodiff_reference():
  rng = np.random.default_rng(3)
  U, V = jnp.asarray(rng.normal(size=(12, 5))), jnp.asarray(rng.normal(size=(9, 5)))

  def reference(U, V):
    r = U.shape[1]
    dev = lambda a: jnp.sum(jnp.square(a.T @ a - jnp.eye(r)))
    return (dev(U) + dev(V)) / r**2

  chex.assert_trees_all_close(jax.grad(R.orthogonality, (0, 1))(U, V), jax.grad(reference, (0, 1))(U, V), rtol=1e-5)
  chex.assert_trees_all_close(jax.jit(jax.grad(R.orthogonality))(U, V), jax.grad(reference)(U, V), rtol=1e-5)
