"""The NNX layer-kind registry (``jaxsvd.nnx.kinds``): resolution by class, registration, each kind's rules."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxsvd.core.matrix_view import simple_view
from jaxsvd.nnx import calibration as nnx_calibration
from jaxsvd.nnx import kinds
from jaxsvd.nnx import svdifylib as svdify_nnx

REPO = pathlib.Path(__file__).resolve().parents[2]


def rngs(seed=0):
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def test_every_flax_layer_class_and_svd_layer_resolves_to_its_kind():
  layers = {"Linear": nnx.Linear(3, 4, rngs=rngs()), "LinearGeneral": nnx.LinearGeneral(3, (2, 2), rngs=rngs()),
            "Conv": nnx.Conv(3, 4, (3, 3), rngs=rngs()), "Embed": nnx.Embed(10, 4, rngs=rngs()),
            "Einsum": nnx.Einsum("bd,dh->bh", (3, 4), rngs=rngs()),
            "ConvTranspose": nnx.ConvTranspose(3, 4, (2, 2), rngs=rngs())}
  for name, layer in layers.items():
    kind = kinds.resolve(layer)
    assert kind.name == name and kind.layer is type(layer) and kind in kinds.registered()
    assert kinds.resolve(svdify_nnx.to_svd(layer, None)) is kind  # the SVD layer it builds resolves back
  assert set(kinds.layer_classes()) >= {type(layer) for layer in layers.values()}
  assert kinds.resolve(nnx.BatchNorm(3, rngs=rngs())) is None and kinds.resolve(object()) is None


def test_a_kind_registered_for_a_subclass_overrides_its_parents():
  class Wide(nnx.Linear):
    pass

  class WideKind(kinds.linear.LinearKind):
    layer = Wide

    def reasons(self, module):
      return ["kept dense by its own kind"]

  assert kinds.resolve(Wide(2, 3, rngs=rngs())) is kinds.linear.KIND  # before: the parent's kind
  mine = kinds.register(WideKind())
  assert kinds.resolve(Wide(2, 3, rngs=rngs())) is mine and kinds.resolve(nnx.Linear(2, 3, rngs=rngs())) is not mine
  assert kinds.resolve(kinds.linear.KIND.to_svd(nnx.Linear(2, 3, rngs=rngs()), None, "channel", "auto", "signed")) \
      is kinds.linear.KIND  # a shared SVD layer keeps its first kind
  assert svdify_nnx.unsupported(Wide(2, 3, rngs=rngs())) == ["kept dense by its own kind"]
  with pytest.raises(TypeError, match="layer must be the layer class"):
    kinds.register(kinds.Kind())


def test_mac_counts():
  x = (2, 5, 3)
  linear = nnx.Linear(3, 4, rngs=rngs())
  assert kinds.resolve(linear).macs(linear, x, 2) == {"dense": 10 * 12, "factored": 10 * 2 * 7}
  conv = nnx.Conv(3, 4, (3,), strides=2, padding="VALID", rngs=rngs())  # 5 → 2 output positions
  assert kinds.resolve(conv).macs(conv, x) == {"dense": 4 * 9 * 4, "factored": 4 * 4 * 13}
  embed = nnx.Embed(10, 6, rngs=rngs())
  assert kinds.resolve(embed).macs(embed, (2, 5), 3) == {"dense": 0, "factored": 10 * 3 * 6}


def test_a_1d_conv_gets_statistics_in_its_channel_view():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.conv = nnx.Conv(3, 4, (3,), strides=2, padding="VALID", rngs=rngs)

    def __call__(self, x):
      return self.conv(x)

  x = np.random.RandomState(0).randn(2, 7, 3).astype(np.float32)
  stats, views = nnx_calibration.collect(Net(rngs()), [jnp.asarray(x)])
  rows = np.stack([x[b, i:i + 3].reshape(-1) for b in range(2) for i in (0, 2, 4)])  # (k, c) windows, stride 2
  np.testing.assert_allclose(stats["conv"].second_moment, rows.T @ rows, rtol=1e-5, atol=1e-4)
  assert views["conv"].matrix_shape == (4, 9)


class Project(nnx.Module):
  """A user's layer with no flax base class."""

  def __init__(self, din, dout, *, rngs):
    self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (din, dout)))

  def __call__(self, x):
    return x @ self.w[...]


class ProjectKind(kinds.Kind):
  layer, kernel_name = Project, "w"

  def kernel_shape(self, module):
    return tuple(module.w.shape)

  def view(self, module, decomposition):
    return simple_view(module.w.shape, 0, 1)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    return kinds.linear.KIND.svd_layer(*module.w.shape, rank=rank, use_bias=False, mode=mode, sigma=sigma,
                                       kernel=module.w[...])


class Subproject(Project):
  def __call__(self, x):
    return super().__call__(x) + 1.0


def test_a_users_kind_converts_its_layer_and_its_subclasses():
  kinds.register(ProjectKind())

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.a, self.b = Project(4, 6, rngs=rngs), Subproject(6, 2, rngs=rngs)

    def __call__(self, x):
      return self.b(self.a(x))

  x = jax.random.normal(jax.random.key(0), (3, 4))
  model = Model(rngs())
  want = model(x)
  report = svdify_nnx.svdify(model, ranks={"a": 3})
  assert report.converted["a"] == "Project -> LinearSVD: 6 × 4, rank 3 of 4, auto"
  assert report.converted["b"].endswith("reconstruct (subclass Subproject: kernel read through the param)")
  full = Model(rngs())
  svdify_nnx.svdify(full)
  np.testing.assert_allclose(full(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("package", ["nnx", "checkpoint"])
def test_no_isinstance_chain_over_nnx_layer_classes_outside_the_kinds(package):
  layer_classes = "|".join(k.name for k in kinds.registered() if k.layer.__module__.startswith("flax"))
  pattern = re.compile(rf"isinstance\([^)]*nnx\.({layer_classes})\b|type\([^)]*\) (is|in) .*nnx\.({layer_classes})\b")
  found = [f"{path.relative_to(REPO)}:{i}" for path in sorted((REPO / "jaxsvd" / package).rglob("*.py"))
           if "kinds" not in path.parts for i, line in enumerate(path.read_text().splitlines(), 1)
           if pattern.search(line)]
  assert found == []
