"""svdify: any linen model in SVD form — same param paths, same function, decomposition of trained weights."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd import pruning
from jaxsvd.core.structure import ranks
from jaxsvd.deploy import params as deploy_params
from jaxsvd.linen import decompose, flops, svdify
from jaxsvd.linen.modes import in_mode
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.optim import make_optimizer
from jaxsvd.training.train_state import TrainState, eval_step, train_step


class SmallCNN(nn.Module):
  """A user's model: the library knows nothing of it."""
  dilation: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.Conv(16, (3, 3), strides=2, padding=1, kernel_dilation=self.dilation)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(10)(x)


X = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype(np.float32)
FULL = {"Conv_0": 8, "Conv_1": 16, "Dense_0": 10}


def test_param_paths_are_the_models_and_ranks_read_back():
  dense = SmallCNN().init(jax.random.key(0), X)
  svd = svdify(SmallCNN()).init(jax.random.key(0), X)
  assert ranks(svd["params"]) == FULL
  assert set(svd["params"]) == set(dense["params"]) and set(svd["batch_stats"]) == set(dense["batch_stats"])
  chex.assert_shape([svd["params"]["Conv_1"]["U"], svd["params"]["Conv_1"]["V"]], [(16, 16), (72, 16)])
  assert set(svd["params"]["Dense_0"]) == {"U", "s", "V", "bias"}


@pytest.mark.parametrize("mode", ["reconstruct", "factored", "auto"])
@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_same_function_as_the_dense_model_with_merged_kernels(mode, decomposition):
  svd_model = svdify(SmallCNN(), {"Conv_1": 5}, decomposition, mode)
  variables = svd_model.init(jax.random.key(1), X)
  template = SmallCNN().init(jax.random.key(0), X)["params"]
  merged = {**variables, "params": deploy_params.merged_params(variables["params"], template)}
  chex.assert_trees_all_close(svd_model.apply(variables, X), SmallCNN().apply(merged, X), atol=1e-4, rtol=1e-4)


def test_decompose_trained_dense_weights_full_and_truncated():
  dense_vars = SmallCNN().init(jax.random.key(2), X)
  full = svdify(SmallCNN())
  chex.assert_trees_all_close(full.apply(decompose(full, dense_vars, X), X), SmallCNN().apply(dense_vars, X),
                              atol=1e-4, rtol=1e-4)
  low = svdify(SmallCNN(), {"Conv_1": 3, "Dense_0": 2})
  expected = jax.tree.map(np.asarray, dense_vars)
  for path, r in (("Conv_1", 3), ("Dense_0", 2)):  # reference: numpy's best rank-r approximation of W
    kernel = expected["params"][path]["kernel"]
    mat = kernel.reshape(-1, kernel.shape[-1])
    u, s, vt = np.linalg.svd(mat, full_matrices=False)
    expected["params"][path]["kernel"] = ((u[:, :r] * s[:r]) @ vt[:r]).reshape(kernel.shape)
  out = low.apply(decompose(low, dense_vars, X), X)
  chex.assert_trees_all_close(out, SmallCNN().apply(expected, X), atol=1e-4, rtol=1e-4)


def test_full_rank_init_is_the_layers_own_init():
  # nn.Conv's default init is LeCun normal: std = 1/sqrt(fan_in). At full rank W is exactly such a draw.
  model = nn.Conv(256, (3, 3))
  variables = svdify(model).init(jax.random.key(3), np.zeros((1, 8, 8, 64), np.float32))
  template = model.init(jax.random.key(0), np.zeros((1, 8, 8, 64), np.float32))["params"]
  kernel = deploy_params.merged_params(variables["params"], template)["kernel"]
  np.testing.assert_allclose(np.std(kernel), 1 / np.sqrt(9 * 64), rtol=0.05)


def test_prune_then_rebuild_from_ranks_and_train():
  svd_model = svdify(SmallCNN())
  variables = svd_model.init(jax.random.key(4), X)
  params, new_ranks, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=0.5))
  assert new_ranks == {"Conv_0": 4, "Conv_1": 8, "Dense_0": 5}
  pruned = svdify(SmallCNN(), new_ranks)
  tx = make_optimizer({"optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9}, params, 10, 1)
  state = TrainState.create(pruned.apply, {**variables, "params": params}, tx)
  batch = {"image": X, "label": np.arange(4, dtype=np.int32)}
  state, metrics = jax.jit(train_step, static_argnums=(2,))(state, batch, RegularizerConfig(1e-2, 1e-3))
  assert ranks(state.params) == new_ranks and np.isfinite(metrics["loss"]) and metrics["sparsity"] > 0
  assert metrics["loss"] > metrics["ce"]
  outs = [jax.jit(eval_step, static_argnames="mode")(state, batch, mode=m) for m in (None, "reconstruct", "factored")]
  for out in outs[1:]:
    chex.assert_trees_all_close(out, outs[0], atol=1e-4, rtol=1e-4)
  assert in_mode(pruned.apply, "factored").__self__.mode == "factored"


def test_skip_keeps_a_layer_dense_and_bad_input_errors_name_the_layer():
  variables = svdify(SmallCNN(), skip=["Conv_0"]).init(jax.random.key(0), X)
  assert set(variables["params"]["Conv_0"]) == {"kernel", "bias"} and "Conv_0" not in ranks(variables["params"])
  assert ranks(svdify(SmallCNN(dilation=2)).init(jax.random.key(0), X)["params"]) == FULL  # via its kernel param
  assert "Conv_1" not in ranks(svdify(SmallCNN(), skip_pattern=r"Conv_\d").init(jax.random.key(0), X)["params"])
  assert set(ranks(svdify(SmallCNN(), skip_if=lambda p, m: isinstance(m, nn.Conv)).init(
      jax.random.key(0), X)["params"])) == {"Dense_0"}
  with pytest.raises(ValueError, match=r"\['Conv_9'\] that are not converted layers"):
    svdify(SmallCNN(), {"Conv_9": 2}).init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="exceeds"):
    svdify(SmallCNN(), {"Conv_0": 9}).init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="int >= 1"):
    svdify(SmallCNN(), {"Conv_0": 0})
  with pytest.raises(ValueError, match="svdify.mode"):
    svdify(SmallCNN(), mode="fast")
  with pytest.raises(ValueError, match="both in ranks and in skip"):
    svdify(SmallCNN(), {"Conv_0": 2}, skip=["Conv_0"])


def test_decompose_reports_a_missing_kernel():
  dense_vars = SmallCNN().init(jax.random.key(0), X)
  del dense_vars["params"]["Conv_1"]
  with pytest.raises(ValueError, match="no kernel at layer 'Conv_1'"):
    decompose(svdify(SmallCNN()), dense_vars, X)


def test_jit_caches_on_the_svd_model():
  svd_model = svdify(SmallCNN(), {"Conv_1": 4})
  variables = svd_model.init(jax.random.key(0), X)
  traces = []

  @jax.jit
  def apply(variables, x):
    traces.append(1)
    return svd_model.apply(variables, x)

  apply(variables, X)
  apply(variables, jnp.asarray(X) + 1)
  assert len(traces) == 1 and hash(svd_model) == hash(svdify(SmallCNN(), {"Conv_1": 4}))


def test_flops_count_the_converted_layers_at_their_ranks():
  dense = flops.count(SmallCNN(), (12, 12, 3))
  svd = flops.count(svdify(SmallCNN(), {"Conv_1": 4}, skip=("Dense_0",)), (12, 12, 3))
  assert {k: c.kind for k, c in svd.layers.items()} == {"Conv_0": "ConvSVD", "Conv_1": "ConvSVD", "Dense_0": "Dense"}
  out = 6 * 6  # Conv_1: stride 2 on 12×12; factored = (3·3·8 → 4) then (4 → 16) per output pixel
  assert dense.layers["Conv_1"].macs == out * 9 * 8 * 16 and svd.layers["Conv_1"].macs == out * (9 * 8 * 4 + 4 * 16)
  assert svd.layers["Conv_0"].macs == dense.layers["Conv_0"].macs and svd.layers["Dense_0"] == dense.layers["Dense_0"]
