"""svdify per layer type: which linear layers convert (equal to the dense flax layer at full rank), which are left
dense and why; stacked layers in the regularizers and in prune, against NumPy re-derivations."""

import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core import regularizers
from jaxsvd.core.structure import ranks
from jaxsvd.linen import decompose, svdify
from jaxsvd.pruning import Strategy, prune


class StdConv(nn.Conv):
  """Weight-standardized conv (BiT / big_vision style): the kernel is transformed before use."""

  def param(self, name, *args, **kwargs):
    param = super().param(name, *args, **kwargs)
    if name == "kernel":
      param = (param - param.mean(axis=(0, 1, 2))) / (param.std(axis=(0, 1, 2)) + 1e-5)
    return param


class WideConv(nn.Conv):
  """A subclass that only changes defaults: converted through nn.Conv's math."""
  kernel_size: tuple = (3,)


class Zoo(nn.Module):
  @nn.compact
  def __call__(self, x):  # x: (N, 6, 4)
    a = nn.Conv(6, (3,), feature_group_count=2, kernel_dilation=2)(x)  # 1-D, grouped, dilated
    b = nn.Conv(5, (2, 2, 2))(x.reshape(x.shape[0], 2, 3, 4, 1))  # 3-D
    c = nn.Einsum((4, 2, 3), "nlc,chd->nlhd")(x)  # kernel (c, h, d): M = (h·d) × c
    d = nn.Einsum((4, 3), "nlc,cd->nld", name="projection")(x)  # a plain matrix
    e = WideConv(4)(x)
    f = nn.ConvLocal(3, (3,))(x)  # one matrix per output position
    g = nn.DenseGeneral((2, 3), axis=(-2, -1), batch_dims=())(x[:, :2])
    h = nn.vmap(nn.Dense, variable_axes={"params": 0}, split_rngs={"params": True})(3, name="vmapped")(x)
    return [a, b, c, d, e, f, g, h]


def test_every_linear_layer_type_converts_and_equals_the_dense_layer_at_full_rank():
  x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)
  dense = Zoo().init(jax.random.key(0), x)
  svd_model = svdify(Zoo())
  report = svd_model.report(x)
  assert set(report.converted) == {"Conv_0", "Conv_1", "Einsum_0", "projection", "WideConv_0", "ConvLocal_0",
                                   "DenseGeneral_0", "vmapped"} and not report.dense
  assert report.converted["Conv_0"].matrix == "2 × (3 × 6)"  # per group: n/g × k·c/g
  assert report.converted["Einsum_0"].matrix == "6 × 4" and report.converted["ConvLocal_0"].matrix == "6 × (3 × 12)"
  assert report.converted["DenseGeneral_0"].matrix == "6 × 8"  # ∏out × ∏in
  full = decompose(svd_model, dense, x)
  want = jax.jit(Zoo().apply)(dense, x)
  apply = jax.jit(svd_model.apply)
  for got, expected in zip(apply(full, x), want):
    chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-5)
  init = jax.jit(svd_model.init)(jax.random.key(0), x)  # at full rank the SVD init rebuilds the dense init exactly
  for got, expected in zip(apply(init, x), want):
    chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-5)


class Mixed(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = StdConv(4, (3, 3))(x)
    x = nn.Conv(4, (3, 3), mask=jnp.ones((3, 3, 4, 4)))(x)
    x = nn.Einsum((4, 4), "nhwc,cd->nhd")(x)  # w is summed from the input; the kernel is a matrix
    x = nn.Einsum((4, 2), "nhc,ce->nh", name="reduce")(x)  # e is summed away: not a matrix map
    return nn.Dense(3)(x)


def test_layers_that_cannot_convert_are_reported_with_reasons_never_silently():
  x = jnp.ones((1, 5, 5, 4))
  svd_model = svdify(Mixed())
  report = svd_model.report(x)
  assert set(report.converted) == {"Einsum_0", "Dense_0", "StdConv_0"}  # StdConv reads its kernel through param
  assert report.converted["StdConv_0"].execution.startswith("reconstruct (subclass StdConv")
  assert "mask" in report.dense["Conv_0"] and "sums kernel axes ['e']" in report.dense["reduce"]
  with pytest.warns(UserWarning, match="left dense.*Conv_0"):
    svd_model.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="no layer of Mixed was converted.*Conv_0"):
    svdify(Mixed(), skip=("Einsum_0", "Dense_0", "StdConv_0")).init(jax.random.key(0), x)


class Backbone(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(nn.relu(nn.Dense(8)(x)))


class Outer(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(svdify(Backbone(), {"Dense_1": 2})(x))  # ranks relative to the backbone


def test_an_svd_model_is_a_linen_submodule_at_the_dense_models_param_paths():
  variables = Outer().init(jax.random.key(0), jnp.ones((1, 5)))
  assert ranks(variables["params"]) == {"Backbone_0/Dense_0": 4, "Backbone_0/Dense_1": 2}  # (8→4), (5→8) at 2
  assert set(variables["params"]["Dense_0"]) == {"kernel", "bias"}


def test_stacked_regularizers_sum_the_slices():
  rng = np.random.default_rng(1)
  U, s, V = rng.normal(size=(3, 2, 6, 4)), rng.normal(size=(3, 2, 4)), rng.normal(size=(3, 2, 5, 4))
  params = {"layer": {"U": jnp.asarray(U), "s": jnp.asarray(s), "V": jnp.asarray(V)}}
  gram = lambda a: np.sum((a.T @ a - np.eye(a.shape[1])) ** 2)
  orth = sum((gram(U[i, j]) + gram(V[i, j])) / 16 for i in range(3) for j in range(2))
  hoyer = sum(np.abs(s[i, j]).sum() / np.linalg.norm(s[i, j]) for i in range(3) for j in range(2))
  np.testing.assert_allclose(regularizers.total_orthogonality(params), orth, rtol=1e-5)
  np.testing.assert_allclose(regularizers.total_sparsity(params, "hoyer"), hoyer, rtol=1e-5)


def test_prune_keeps_one_rank_per_stack_the_max_over_slices():
  rng = np.random.default_rng(2)
  s = np.stack([[8.0, 1.0, 0.5, 0.1], [3.0, 2.9, 2.8, 0.1], [0.2, 5.0, 0.1, 0.3]])
  U, V = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 5, 4))
  params = {"scan": {"U": jnp.asarray(U), "s": jnp.asarray(s), "V": jnp.asarray(V)}}
  strategy = Strategy("energy", energy=0.05)
  new, new_ranks, report = prune(params, strategy)
  k = max(strategy.keep_count(np.sort(np.abs(row))[::-1]) for row in s)  # slice 1 needs 3
  assert new_ranks == {"scan": k} == {"scan": 3}
  for i in range(3):  # each slice keeps its own k largest directions: its matrix is the best rank-k one
    order = np.argsort(-np.abs(s[i]))[:k]
    want = (U[i][:, order] * s[i][order]) @ V[i][:, order].T
    got = (np.asarray(new["scan"]["U"][i]) * np.asarray(new["scan"]["s"][i])) @ np.asarray(new["scan"]["V"][i]).T
    np.testing.assert_allclose(got, want, rtol=1e-6)
  assert report.layers["scan"].old_rank == 4 and report.keep["scan"].shape == (3, 3)


@pytest.mark.slow  # tests/project/docs_examples_test.py runs it by default; this checks what it computes
def test_the_docs_linen_example_computes_a_pruned_model():
  page = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "own_model.md")).read()
  code = page.split("<!-- linen-example -->")[1].split("<!-- /linen-example -->")[0]
  scope = {}
  exec(code.replace("```python", "").replace("```", ""), scope)  # noqa: S102 - our own docs
  assert scope["logits"].shape == (8, 10) and sum(scope["new_ranks"].values()) < sum(
      ranks(scope["variables"]["params"]).values())
