"""The linen layer-kind registry (``jaxsvd.linen.kinds``): resolution by class and the rules callers ask of it."""

import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core.matrix_view import simple_view
from jaxsvd.linen import flops, kinds
from jaxsvd.linen.layers import ConvSVD, DenseSVD
from jaxsvd.linen.svdifylib import svdify

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_every_linen_layer_class_and_zoo_svd_layer_resolves_to_its_kind():
  cases = {nn.Dense(3): "Dense", nn.DenseGeneral(3): "DenseGeneral", nn.Conv(3, (3, 3)): "Conv",
           nn.ConvTranspose(3, (2, 2)): "ConvTranspose", nn.ConvLocal(3, (2, 2)): "ConvLocal",
           nn.Embed(10, 3): "Embed", nn.Einsum((3, 4), "bd,dh->bh"): "Einsum", DenseSVD(3): "Dense",
           ConvSVD(3): "Conv"}
  for module, name in cases.items():
    assert kinds.resolve(module).name == name
  assert kinds.resolve(nn.BatchNorm()) is None
  assert kinds.resolve(nn.Embed(10, 3)).kernel_name == "embedding"
  assert kinds.resolve(nn.Dense(3)).native(nn.Dense(3), jnp.ones((2, 4)))
  assert not kinds.resolve(nn.Conv(3, (3,))).native(nn.Conv(3, (3,)), jnp.ones((2, 5, 4)))  # 1-D: the kernel way


class Scale(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return x @ self.param("w", nn.initializers.lecun_normal(), (x.shape[-1], self.features))


class ScaleKind(kinds.Kind):
  layer, kernel_name = Scale, "w"

  def view(self, module, kernel_shape, decomposition, call=None):
    return simple_view(kernel_shape, 0, 1)


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    return Scale(2, name="out")(nn.relu(Scale(8, name="inp")(x)))


def test_a_users_kind_converts_its_layer_and_counts_its_macs():
  kinds.register(ScaleKind())
  net, x = Net(), jnp.ones((3, 5))
  dense_vars = net.init(jax.random.key(0), x)
  model = svdify(net, ranks={"inp": 3})
  report = model.report(x)
  assert report.converted["inp"].kind == "Scale" and report.converted["inp"].rank == 3
  variables = model.init(jax.random.key(0), x)
  assert variables["params"]["inp"]["U"].shape == (8, 3) and model.apply(variables, x).shape == (3, 2)
  costs = flops.count(model, (5,)).layers
  assert costs["inp"].kind == "ScaleSVD" and costs["inp"].macs == min(8 * 5, 3 * (8 + 5))
  assert flops.count(net, (5,)).layers["out"].macs == 2 * 8
  assert np.shape(dense_vars["params"]["inp"]["w"]) == (5, 8)


@pytest.mark.parametrize("package", ["linen", "deploy"])
def test_no_isinstance_chain_over_linen_layer_classes_outside_the_kinds(package):
  layer_classes = "|".join(k.name for k in kinds.registered() if k.layer.__module__.startswith("flax"))
  pattern = re.compile(rf"isinstance\([^)]*(nn\.({layer_classes})|DenseSVD|ConvSVD)\b"
                       rf"|type\([^)]*\) (is|in) .*nn\.({layer_classes})\b")
  found = [f"{path.relative_to(REPO)}:{i}" for path in sorted((REPO / "jaxsvd" / package).rglob("*.py"))
           if "kinds" not in path.parts for i, line in enumerate(path.read_text().splitlines(), 1)
           if pattern.search(line)]
  assert found == []
