import chex
import jax
import jax.numpy as jnp
import pytest

from jaxsvd.core.structure import ranks
from jaxsvd.deploy import params as deploy_params
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec, build_model, resnet_cifar


@pytest.mark.parametrize("name, n_svd", [("resnet8", 6), ("resnet20", 18), ("resnet18", 19), ("vgg11", 7)])
def test_models_build_with_expected_svd_layers(name, n_svd):
  model = build_model(name, 10, SVDSpec())
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert len(ranks(variables["params"])) == n_svd  # first conv and classifier stay dense


def test_dense_baseline_flops_match_literature():
  # ResNet-20 on CIFAR: ~41 M MACs, 0.27 M params (He et al. 2016).
  cost = flops.count(build_model("resnet20"), (32, 32, 3))
  assert 40e6 < cost.macs < 42e6 and 0.26e6 < cost.params < 0.28e6


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_full_rank_svd_model_has_the_dense_init(decomposition):
  x = jnp.zeros((1, 16, 16, 3))
  dense = build_model("resnet8", 10, None).init(jax.random.key(0), x)["params"]
  svd_params = build_model("resnet8", 10, SVDSpec(decomposition)).init(jax.random.key(0), x)["params"]
  chex.assert_trees_all_close(deploy_params.merged_params(svd_params, dense), dense, atol=1e-5)


def test_modes_agree_on_a_whole_model():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  spec = SVDSpec("spatial", dense_last=False)
  variables = build_model("resnet8", 10, spec, ranks=None).init(jax.random.key(0), x)
  outs = [build_model("resnet8", 10, spec.with_mode(m)).apply(variables, x) for m in ("reconstruct", "factored", "auto")]
  chex.assert_trees_all_close(outs[0], outs[1], outs[2], atol=1e-4, rtol=1e-4)


def test_fixed_low_rank_via_default_rank():
  model = build_model("resnet8", 10, SVDSpec(default_rank=4))
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  assert set(ranks(variables["params"]).values()) == {4}


@pytest.mark.parametrize("call, match", [
    (lambda: build_model("resnet21"), "model"), (lambda: resnet_cifar(15), "6n\\+2"),
    (lambda: SVDSpec(decomposition="depth"), "decomposition"), (lambda: SVDSpec(ranks=(("a", 0),)), "ranks")])
def test_bad_model_config(call, match):
  with pytest.raises(ValueError, match=match):
    call()
