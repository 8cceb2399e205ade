"""Dynamic pruning (jaxsvd.pruning.dynamic): thresholds and the masked forward against NumPy re-derivations, inside
jit for a zoo model and an svdify'd user model, and straight-through gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core.tree import leaves_by_path
from jaxsvd.linen import svdify
from jaxsvd.models import build_model
from jaxsvd.pruning import dynamic
from jaxsvd.pruning import masks as masks_lib
from tests.user_models import CNN


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(5)(x))
    return nn.Dense(3)(h)


def _mlp():
  x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
  params = MLP().init(jax.random.key(0), x)["params"]
  return x, jax.tree.map(np.asarray, params)


def _numpy_forward(params, x, keep, per_layer):
  """The masked MLP, re-derived: thresholds by sorting |w| (descending), w·[|w| ≥ t], x·W + b, relu."""
  kernels = {"Dense_0": params["Dense_0"]["kernel"], "Dense_1": params["Dense_1"]["kernel"]}
  if per_layer:
    ts = {k: np.sort(np.abs(w).ravel())[::-1][max(1, round(keep * w.size)) - 1] for k, w in kernels.items()}
  else:
    flat = np.sort(np.concatenate([np.abs(w).ravel() for w in kernels.values()]))[::-1]
    k = keep if isinstance(keep, int) else max(1, round(keep * flat.size))
    ts = {name: flat[k - 1] for name in kernels}
  w = {k: np.where(np.abs(v) >= ts[k], v, 0.0) for k, v in kernels.items()}
  h = np.maximum(x @ w["Dense_0"] + params["Dense_0"]["bias"], 0.0)
  return h @ w["Dense_1"] + params["Dense_1"]["bias"], w


@pytest.mark.parametrize("keep,per_layer", [(0.4, False), (17, False), (0.3, True)])
def test_masked_forward_matches_numpy_inside_jit(keep, per_layer):
  x, params = _mlp()
  apply = dynamic.MaskedApply(MLP().apply, keep, per_layer)
  out = jax.jit(apply)({"params": params}, x)
  expected, masked = _numpy_forward(params, x, keep, per_layer)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-6)
  pruned = dynamic.dynamic_prune(params, keep, per_layer)
  for name, w in masked.items():
    chex.assert_trees_all_equal(np.asarray(pruned[name]["kernel"]), w.astype(np.float32))
    chex.assert_trees_all_equal(pruned[name]["bias"], params[name]["bias"])  # biases are not selected
  kept = sum(int(np.count_nonzero(w)) for w in masked.values())
  if isinstance(keep, int):
    assert kept == keep


def test_gradients_are_straight_through():
  """∂L/∂w of the dynamic model = ∂L/∂ŵ of the masked model at ŵ = w ⊙ m, pruned entries included."""
  x, params = _mlp()
  loss = lambda apply, p: jnp.sum(apply({"params": p}, x) ** 2)  # noqa: E731
  grads = jax.grad(lambda p: loss(dynamic.MaskedApply(MLP().apply, 0.4), p))(params)
  masked = dynamic.dynamic_prune(params, 0.4)
  expected = jax.grad(lambda p: loss(MLP().apply, p))(jax.tree.map(jnp.asarray, masked))
  chex.assert_trees_all_close(grads, expected, rtol=1e-6, atol=1e-7)
  m = np.asarray(dynamic.dynamic_masks(params, 0.4)["Dense_0/kernel"])
  g = np.asarray(grads["Dense_0"]["kernel"])
  assert (~m).any() and np.abs(g[~m]).sum() > 0  # pruned weights get a gradient: they can come back


def test_zoo_model_under_jit_matches_the_host_mask():
  model = build_model("resnet8", 10, None)
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  variables = model.init(jax.random.key(0), x)
  n = sum(np.size(w) for p, w in leaves_by_path(variables["params"]).items() if masks_lib.is_kernel(p, w))
  keep = n // 3
  out = jax.jit(dynamic.MaskedApply(model.apply, keep))(variables, x)
  host = masks_lib.global_unstructured(variables["params"], n - keep)  # exact count, NumPy on the host
  expected = model.apply({**variables, "params": masks_lib.make_permanent(variables["params"], host)}, x)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-4, atol=1e-5)
  dyn = dynamic.dynamic_masks(variables["params"], keep)
  assert sum(int(np.sum(m)) for m in dyn.values()) == keep
  for path, m in dyn.items():
    chex.assert_trees_all_equal(np.asarray(m), np.asarray(host[path]))


def test_svdified_user_model_masks_kernels_or_singular_values():
  x = np.random.default_rng(0).normal(size=(2, 12, 12, 3)).astype(np.float32)
  model = svdify(CNN())
  variables = model.init(jax.random.key(0), x)
  params = variables["params"]
  kernels = [p for p, w in leaves_by_path(params).items() if masks_lib.is_kernel(p, w)]
  assert not any("/U" in p or "/V" in p for p in kernels)  # SVD factors are never selected by default
  is_s = lambda path, w: path.rsplit("/", 1)[-1] == "s"  # noqa: E731
  s_all = {p: np.asarray(w) for p, w in leaves_by_path(params).items() if is_s(p, w)}
  assert s_all
  flat = np.sort(np.abs(np.concatenate([s.ravel() for s in s_all.values()])))[::-1]
  t = flat[5]
  pruned = dynamic.dynamic_prune(params, 6, select=is_s)
  for path, s in s_all.items():
    chex.assert_trees_all_equal(np.asarray(leaves_by_path(pruned)[path]), np.where(np.abs(s) >= t, s, 0.0))
  expected = model.apply({**variables, "params": pruned}, x)
  out = jax.jit(dynamic.MaskedApply(model.apply, 6, select=is_s))(variables, x)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_bad_keep_is_an_error():
  _, params = _mlp()
  with pytest.raises(ValueError, match="keep must be a fraction"):
    dynamic.dynamic_prune(params, 0.0)
  with pytest.raises(ValueError, match="per_layer needs keep as a fraction"):
    dynamic.dynamic_prune(params, 5, per_layer=True)
  with pytest.raises(ValueError, match="no leaf of params is selected"):
    dynamic.dynamic_prune(params, 0.5, select=lambda p, w: False)
