"""The official-code options: sigma='abs' in every layer type and mode, the official init, CIFAR Bottleneck ResNets,
option-B shortcuts, the SVD stem, dense stride-2 convs, ResNet-50, LR milestones in epochs, fixed normalization,
records without the new fields."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxsvd import data
from jaxsvd.core.record import Architecture
from jaxsvd.deploy import params as deploy_params
from jaxsvd.linen.layers import ConvSVD, DenseSVD, official_init
from jaxsvd.linen.svdifylib import svdify
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.models.resnet import Bottleneck
from jaxsvd.training import optim


def conv_ref(x, U, s, V, kh, kw, c, n, decomposition, strides):
  """The kernel from U·diag(|s|)·Vᵀ by the matrix views' index formulas, then lax's conv."""
  M = (U * np.abs(s)) @ V.T
  K = np.zeros((kh, kw, c, n))
  for i in range(kh):
    for w in range(kw):
      for ci in range(c):
        for ni in range(n):
          K[i, w, ci, ni] = M[ni, (i * kw + w) * c + ci] if decomposition == "channel" else M[w * n + ni, i * c + ci]
  return lax.conv_general_dilated(x, jnp.asarray(K, x.dtype), strides, "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_abs_sigma_conv_is_the_kernel_with_abs_s_in_every_mode(decomposition):
  x = jax.random.normal(jax.random.key(1), (2, 7, 6, 3))
  outs = []
  for mode in ("reconstruct", "factored", "auto"):
    layer = ConvSVD(5, (3, 3), (2, 2), "SAME", rank=4, decomposition=decomposition, mode=mode, sigma="abs",
                    init_scheme="official")
    params = layer.init(jax.random.key(0), x)["params"]
    params["s"] = params["s"].at[:2].set(jnp.array([-0.7, 0.0]))
    outs.append(layer.apply({"params": params}, x))
  U, s, V = (np.asarray(params[k], np.float64) for k in ("U", "s", "V"))
  expected = conv_ref(x, U, s, V, 3, 3, 3, 5, decomposition, (2, 2))
  for out in outs:
    chex.assert_trees_all_close(out, expected, atol=2e-5, rtol=2e-5)
  # the gradient is finite at s = 0 (|s| folded into one factor: ∂/∂s = ±u·vᵀ terms, no 1/√|s|)
  grad = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) ** 2))(params)
  chex.assert_tree_all_finite(grad)
  assert float(jnp.abs(grad["s"][1])) > 0


def test_abs_sigma_dense_svdify_and_exports_agree():
  x = jax.random.normal(jax.random.key(1), (3, 6))
  layer = DenseSVD(4, rank=3, sigma="abs")
  params = layer.init(jax.random.key(0), x)["params"]
  params["s"] = params["s"] * jnp.array([-1.0, 1.0, -1.0])
  expected = x @ ((params["V"] * jnp.abs(params["s"])) @ params["U"].T) + params["bias"]
  chex.assert_trees_all_close(layer.apply({"params": params}, x), expected, atol=1e-5)

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(4)(x)

  model = svdify(Net(), {"Dense_0": 3}, sigma="abs")
  net_params = {"Dense_0": params}
  chex.assert_trees_all_close(model.apply({"params": net_params}, x), expected, atol=1e-5)
  dense_template = {"Dense_0": {"kernel": jnp.zeros((6, 4)), "bias": jnp.zeros(4)}}
  merged = deploy_params.merged_params(net_params, dense_template, sigma="abs")
  chex.assert_trees_all_close(Net().apply({"params": merged}, x), expected, atol=1e-5)
  factored = deploy_params.factored_params(net_params, sigma="abs")
  chex.assert_trees_all_close(model.apply({"params": factored}, x), expected, atol=1e-5)


def test_official_init_statistics():
  # torch kaiming_normal_ on (a, b) draws N(0, 2/b): channel N (n, r), C (r, c·k²); spatial N (c·k, r), C (r, n·k)
  U, s, V = official_init(jax.random.key(0), (3, 3, 64, 128), "channel", 128)
  assert U.shape == (128, 128) and V.shape == (576, 128)
  np.testing.assert_allclose([U.std(), V.std(), s.std()], [np.sqrt(2 / 128), np.sqrt(2 / 576), 1.0], rtol=0.05)
  U, s, V = official_init(jax.random.key(0), (3, 3, 64, 128), "spatial", 192)
  assert U.shape == (384, 192) and V.shape == (192, 192)
  np.testing.assert_allclose([U.std(), V.std()], [np.sqrt(2 / 384), np.sqrt(2 / 192)], rtol=0.05)


def _shapes(model, shape):
  v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))
  return {"/".join(str(k.key) for k in kp): leaf.shape for kp, leaf in jax.tree_util.tree_leaves_with_path(v["params"])}


def official_cifar_convs(depth):
  """(in, out, k, stride) of every conv of the official CIFAR ResNet (resnet.py: _make_layer, Bottleneck)."""
  n, inplanes, convs = (depth - 2) // 6, 16, [(3, 16, 3, 1)]
  for planes, stride in ((16, 1), (32, 2), (64, 2)):
    for b in range(n):
      s = stride if b == 0 else 1
      convs += [(inplanes, planes, 1, 1), (planes, planes, 3, s), (planes, planes * 4, 1, 1)]
      if b == 0:
        convs.append((inplanes, planes * 4, 1, s))
      inplanes = planes * 4
  return convs


def test_cifar_bottleneck_resnet56_has_the_official_layout_and_no_relu_after_bn2():
  model = build_model("resnet56", 10, None, options={"block": "bottleneck"})
  shapes = _shapes(model, (32, 32, 3))
  ours = sorted((k[2], k[3], k[0]) for p, k in shapes.items() if p.endswith("kernel") and len(k) == 4)
  assert ours == sorted((c, n, k) for c, n, k, _ in official_cifar_convs(56))
  assert shapes["classifier/kernel"] == (256, 10)
  # no ReLU after bn2: a negative bn2 output reaches conv3 unclipped (one block, the model's own class)
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 16))
  seen = []

  def spy(next_fun, args, kwargs, context):
    if context.module.name == "conv3" and context.method_name == "__call__":
      seen.append(float(jnp.min(args[0])))
    return next_fun(*args, **kwargs)

  for relu2 in (False, True):
    block = Bottleneck(4, 1, None, relu2=relu2)
    variables = block.init(jax.random.key(1), x, False)
    with nn.intercept_methods(spy):
      block.apply(variables, x, False)
  assert seen[0] < 0 <= seen[1]
  assert not model.bottleneck_relu and build_model("resnet50").bottleneck_relu  # CIFAR: none; ImageNet: ReLU


def test_resnet50_matches_torchvision_param_count_and_svd_options():
  assert sum(int(np.prod(s)) for s in _shapes(build_model("resnet50", 1000), (224, 224, 3)).values()) == 25_557_032
  svd = SVDSpec(dense_first=False, dense_strided=True)
  shapes = _shapes(build_model("resnet50", 10, svd), (64, 64, 3))
  assert "stage2_block0/conv2/kernel" in shapes and "stage2_block0/proj/kernel" in shapes  # stride 2: dense
  assert "stage2_block0/conv1/U" in shapes and "stem/kernel" in shapes  # stride 1: SVD; 7×7/2 stem: dense
  assert "stem/U" in _shapes(build_model("resnet20", 10, SVDSpec(dense_first=False)), (32, 32, 3))


def test_option_b_and_bad_options():
  shapes = _shapes(build_model("resnet20", 10, SVDSpec(), options={"shortcut": "B"}), (32, 32, 3))
  assert shapes["stage2_block0/proj/U"] == (32, 16)
  with pytest.raises(ValueError, match="model_options.shortcut"):
    build_model("resnet20", options={"shortcut": "C"})
  with pytest.raises(ValueError, match="model_options.block is not an option of model='vgg11'"):
    build_model("vgg11", options={"block": "basic"})


def test_bottleneck_widths_are_channel_groups():
  model = build_model("resnet56", 10, SVDSpec(), widths={"stage1_block0/conv2": 5}, options={"block": "bottleneck"})
  shapes = _shapes(model, (32, 32, 3))
  assert shapes["stage1_block0/bn2/scale"] == (5,) and shapes["stage1_block0/conv3/V"][0] == 5


def test_milestones_in_epochs():
  sched = optim.make_schedule({"learning_rate": 1.0, "schedule": "multistep", "milestone_epochs": (81, 122)}, 10, 164)
  assert [float(sched(t)) for t in (809, 810, 1219, 1220)] == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_fixed_cifar_normalization_and_computed_option():
  images = np.full((4, 2, 2, 3), 255, np.uint8)
  mean, std = data.dataset_normalization("cifar10", images)
  np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], rtol=1e-6)
  np.testing.assert_allclose(std, [0.2023, 0.1994, 0.2010], rtol=1e-6)
  np.testing.assert_allclose(data.dataset_normalization("cifar10", images, "computed")[0], 1.0)
  with pytest.raises(ValueError, match="normalization='fixed'"):
    data.dataset_normalization("fashion_mnist", images[..., :1], "fixed")


def test_records_without_sigma_or_options_read_as_signed():
  rec = Architecture("resnet8", 10, (28, 28, 1), SVDSpec(sigma="abs", init="official"), options={"shortcut": "B"})
  d = rec.to_json()
  assert Architecture.from_json(d) == rec
  for key in ("sigma", "init", "dense_strided"):
    del d["svd"][key]
  del d["options"]
  old = Architecture.from_json(d)
  assert (old.svd.sigma, old.svd.init, old.svd.dense_strided, old.options) == ("signed", "svd_of_he", False, None)
