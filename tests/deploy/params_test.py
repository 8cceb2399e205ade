import chex
import jax
import jax.numpy as jnp
import pytest

from jaxsvd import pruning
from jaxsvd.core.structure import ranks
from jaxsvd.deploy import params as deploy_params
from jaxsvd.models import SVDSpec, build_model


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_merge_and_factored_export_match_svd_model(decomposition):
  svd = SVDSpec(decomposition=decomposition, dense_last=False)
  model = build_model("resnet8", 5, svd)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = model.init(jax.random.key(1), x)
  params, _, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=0.5))
  pruned = build_model("resnet8", 5, svd, ranks=ranks(params))
  expected = pruned.apply({**variables, "params": params}, x)

  dense_model = build_model("resnet8", 5, None)
  template = jax.eval_shape(dense_model.init, jax.random.key(0), x)["params"]
  merged = deploy_params.merged_params(params, template)
  chex.assert_trees_all_equal_shapes(merged, template)
  chex.assert_trees_all_close(dense_model.apply({**variables, "params": merged}, x), expected, atol=1e-4, rtol=1e-4)

  folded = deploy_params.factored_params(params)
  for mode in ("factored", "reconstruct"):
    out = build_model("resnet8", 5, svd.with_mode(mode), ranks=ranks(params)).apply(
        {**variables, "params": folded}, x)
    chex.assert_trees_all_close(out, expected, atol=1e-4, rtol=1e-4)


def test_merge_with_wrong_template_names_the_layer():
  svd = SVDSpec()
  x = jnp.ones((1, 8, 8, 3))
  params = build_model("resnet8", 3, svd).init(jax.random.key(0), x)["params"]
  with pytest.raises(ValueError, match="stage1_block0/conv1"):
    deploy_params.merged_params(params, {"stem": {}})
