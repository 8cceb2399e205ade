"""Physical channel pruning: the narrow model built from sliced variables equals the masked wide model; a record's
channel groups, dense kernel shapes and widths."""

import functools

import chex
import jax
import numpy as np
import pytest

from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import channels, slimming
from jaxsvd.pruning import masks as M

X = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)


def _perturbed(variables, seed=1):
  """Random γ/β and running statistics, so that eval-mode BN and the mask choice are not trivial."""
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map_with_path(
      lambda kp, a: a + 0.5 * rng.normal(size=a.shape).astype(np.float32)
      if str(kp[-1].key) in ("scale", "bias") else a, variables["params"])
  stats = jax.tree.map(lambda a: a + 0.3 * np.abs(rng.normal(size=a.shape)).astype(np.float32),
                       variables["batch_stats"])
  return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("name, svd", [
    pytest.param("vgg11", None, marks=pytest.mark.slow), pytest.param("vgg11", SVDSpec("channel"), marks=pytest.mark.slow),  # resnet8 SVD cases stay ("resnet8", None), ("resnet8", SVDSpec("spatial")),
    ("resnet8", SVDSpec("channel", dense_first=False)),
    ("resnet8", SVDSpec("spatial", sigma="abs", init="official"))])  # official init: s ~ N(0, 1), half negative
def test_rebuilt_narrow_model_equals_the_masked_model(name, svd):
  model = build_model(name, 10, svd)
  variables = _perturbed(model.init(jax.random.key(0), X))
  groups = model.channel_groups()
  masks = slimming.channel_masks(variables["params"], 0.4, 1, norms=[g.norm for g in groups])
  masked = {**variables, "params": M.make_permanent(variables["params"], masks)}
  keep = {g.conv: np.flatnonzero(np.asarray(masks[f"{g.norm}/scale"])) for g in groups}
  shapes = channels.kernel_shapes(checkpoint.abstract_variables(build_model(name, 10, None), X.shape[1:])["params"])
  slim = channels.slice_channels(masked, groups, keep, shapes, svd.decomposition if svd else "channel",
                                 svd.sigma if svd else "signed")
  widths = {conv: len(idx) for conv, idx in keep.items()}
  narrow = build_model(name, 10, svd, ranks=ranks(slim["params"]) if svd else None, widths=widths)
  chex.assert_trees_all_equal_shapes(slim, jax.eval_shape(narrow.init, jax.random.key(0), X))
  expected = model.apply(masked, X)  # eval mode: running statistics
  np.testing.assert_allclose(narrow.apply(slim, X), expected, rtol=1e-5, atol=2e-5 * float(np.abs(expected).max()))
  total = sum(np.size(masks[f"{g.norm}/scale"]) for g in groups)
  assert sum(widths.values()) == total - round(0.4 * total)


def test_dense_slices_are_the_kept_channels_numpy_reference():
  model = build_model("vgg11", 10, None)
  variables = _perturbed(model.init(jax.random.key(0), X))
  groups = model.channel_groups()[:2]  # conv0 → bn0 → conv1 and conv1 → bn1 → conv2
  keep = {"conv0": np.array([1, 5, 9]), "conv1": np.array([0, 127])}
  slim = channels.slice_channels(variables, groups, keep, {}, "channel")
  k1 = np.asarray(variables["params"]["conv1"]["kernel"])
  np.testing.assert_array_equal(slim["params"]["conv1"]["kernel"], k1[:, :, [1, 5, 9]][..., [0, 127]])
  np.testing.assert_array_equal(slim["params"]["conv2"]["kernel"],
                                np.asarray(variables["params"]["conv2"]["kernel"])[:, :, [0, 127]])
  np.testing.assert_array_equal(slim["batch_stats"]["bn0"]["var"],
                                np.asarray(variables["batch_stats"]["bn0"]["var"])[[1, 5, 9]])
  untouched = {p for p, leaf in leaves_by_path(slim).items()
               if np.shape(leaf) == np.shape(leaves_by_path(variables)[p])}
  assert "params/conv3/kernel" in untouched and "params/bn1/scale" not in untouched


def test_svd_layer_rank_is_clipped_to_the_narrow_matrix():
  model = build_model("resnet8", 10, SVDSpec())
  variables = model.init(jax.random.key(0), X)
  groups = [g for g in model.channel_groups() if g.conv == "stage1_block0/conv1"]
  dense = checkpoint.abstract_variables(build_model("resnet8", 10, None), X.shape[1:])
  shapes = channels.kernel_shapes(dense["params"])
  slim = channels.slice_channels(variables, groups, {"stage1_block0/conv1": np.array([2, 3])}, shapes)
  assert ranks(slim["params"])["stage1_block0/conv1"] == 2  # U (16, 16) → 2 output channels: rank ≤ 2
  assert ranks(slim["params"])["stage1_block0/conv2"] == 16  # V (3·3·2, 16) → still 16 ≤ min(16, 18)


@pytest.mark.parametrize("name, svd, widths", [
    ("resnet8", None, None), ("resnet8", SVDSpec(), {"stage2_block0/conv1": 5}), ("vgg11", None, {"conv0": 7})])
def test_a_records_groups_shapes_and_widths_without_arrays(name, svd, widths):
  record = Architecture(name, 10, (16, 16, 3), svd=svd, widths=widths)
  model = build_model(name, 10, svd, widths=widths)
  assert channels.channel_groups(record) == list(model.channel_groups())
  dense = checkpoint.abstract_variables(build_model(name, 10, None, widths=widths), (16, 16, 3))["params"]
  assert channels.dense_kernel_shapes(record) == channels.kernel_shapes(dense)
  node = lambda path: functools.reduce(lambda tree, key: tree[key], path.split("/"), dense)  # noqa: E731
  expected = {g.conv: node(g.conv)["kernel"].shape[-1] for g in model.channel_groups()}  # output channels
  assert channels.group_widths(record) == expected and expected.items() >= (widths or {}).items()
