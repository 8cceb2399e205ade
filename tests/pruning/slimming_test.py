"""Network slimming: global |γ| threshold, exact-zero channels, masks as JSON data; on a record: the budget's
masks, the physically narrower variables and record (NumPy references)."""

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsvd  # noqa: F401 - registers the zoo's builder for Architecture.build_model
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.structure import norm_scales, norm_widths, ranks
from jaxsvd.pruning import channels, slimming
from jaxsvd.pruning import masks as M

PARAMS = {"bn1": {"scale": np.array([0.9, 0.01, 0.5, -0.02], np.float32), "bias": np.ones(4, np.float32)},
          "block": {"bn2": {"scale": np.array([0.03, 0.04, 0.8], np.float32), "bias": np.ones(3, np.float32)},
                    "conv": {"kernel": np.ones((3, 3, 4, 3), np.float32)}}}


def test_norm_layers_found_by_structure():
  assert norm_widths(PARAMS) == {"bn1": 4, "block/bn2": 3}
  assert norm_scales(PARAMS) == {"bn1/scale": True, "block/bn2/scale": True}


def test_one_global_threshold_and_min_channels():
  masks = slimming.channel_masks(PARAMS, 3 / 7)  # the 3 smallest |γ| of all 7: 0.01, -0.02, 0.03
  assert slimming.pruned_channels(masks) == {"bn1": [1, 3], "block/bn2": [0]}
  np.testing.assert_array_equal(masks["bn1/bias"], masks["bn1/scale"])
  masks = slimming.channel_masks(PARAMS, 2 / 7, min_channels=3)  # each keeps its 3 largest: only bn1's 0.01 may go
  assert slimming.pruned_channels(masks) == {"bn1": [1], "block/bn2": []}
  masks = slimming.channel_masks(PARAMS, 6 / 7, min_channels=2)  # asks for 6, but each layer keeps its 2 largest
  assert slimming.pruned_channels(masks) == {"bn1": [1, 3], "block/bn2": [0]}
  assert slimming.summary(masks) == {"channels_before": 7, "channels_after": 4}


def test_pruned_channels_round_trip_through_json_and_errors():
  masks = slimming.channel_masks(PARAMS, 0.5)
  again = slimming.masks_from_channels(PARAMS, json.loads(json.dumps(slimming.pruned_channels(masks))))
  assert set(again) == set(masks)
  for path in masks:
    np.testing.assert_array_equal(again[path], masks[path])
  with pytest.raises(ValueError, match="'bn9', which is not a BN layer"):
    slimming.masks_from_channels(PARAMS, {"bn9": [0]})
  with pytest.raises(ValueError, match="out of range"):
    slimming.masks_from_channels(PARAMS, {"bn1": [4]})
  with pytest.raises(ValueError, match=r"slimming.amount must be in \[0.0, 1.0\)"):
    slimming.channel_masks(PARAMS, 1.0)
  with pytest.raises(ValueError, match="no BatchNorm"):
    slimming.channel_masks({"conv": {"kernel": np.ones((2, 2))}}, 0.5)


def test_masked_channels_output_exact_zeros():
  bn = nn.BatchNorm(use_running_average=True)
  x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
  variables = bn.init(jax.random.key(0), x)
  params = {"BatchNorm_0": {"scale": PARAMS["bn1"]["scale"], "bias": PARAMS["bn1"]["bias"]}}
  masks = slimming.channel_masks(params, 0.5)
  pruned = M.make_permanent(params, masks)["BatchNorm_0"]
  y = np.asarray(bn.apply({**variables, "params": pruned}, x))
  assert (y[:, [1, 3]] == 0).all() and (y[:, [0, 2]] != 0).all()


def test_channel_multiple_keeps_back_the_largest_pruned_gammas():
  gamma_a = np.array([0.9, 0.01, 0.5, 0.02, 0.03, 0.8, 0.04, 0.05, 0.06, 0.7])  # 10 channels
  gamma_b = np.array([0.001, 0.002, 0.3, 0.4])
  params = {"a": {"scale": jnp.asarray(gamma_a), "bias": jnp.zeros(10)},
            "b": {"scale": jnp.asarray(gamma_b), "bias": jnp.zeros(4)}}
  plain = slimming.channel_masks(params, 0.5)  # 7 of 14 pruned: one threshold
  rounded = slimming.channel_masks(params, 0.5, multiple=4)
  kept_a, kept_b = np.asarray(rounded["a/scale"]), np.asarray(rounded["b/scale"])
  assert int(np.asarray(plain["a/scale"]).sum()) == 5 and kept_a.sum() == 8  # 5 → 8
  assert int(np.asarray(plain["b/scale"]).sum()) == 2 and kept_b.sum() == 4  # 2 → 4 (the whole layer)
  assert np.all(kept_a >= np.asarray(plain["a/scale"]))  # only adds channels back
  # the three added back in 'a' are its largest pruned |γ| (0.05, 0.04, 0.03)
  np.testing.assert_array_equal(np.flatnonzero(kept_a & ~np.asarray(plain["a/scale"])), [4, 6, 7])
  with pytest.raises(ValueError, match="channel_multiple"):
    slimming.channel_masks(params, 0.5, multiple=0)


RECORD = Architecture("resnet8", 10, (16, 16, 3))
GROUPS = {"stage1_block0/conv1": "stage1_block0/bn1", "stage2_block0/conv1": "stage2_block0/bn1",
          "stage3_block0/conv1": "stage3_block0/bn1"}  # ResNet-8's channel groups: conv1 -> bn1 -> conv2


def _random_variables(record, seed=0):
  """Random variables shaped like the record's model (from ``jax.eval_shape``: nothing is compiled); variances > 0."""
  shapes = jax.eval_shape(record.build_model().init, jax.random.key(0), np.zeros((1, *record.input_shape), np.float32))
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda kp, a: (np.abs if kp[-1].key == "var" else np.asarray)(rng.normal(size=a.shape).astype(np.float32)),
      shapes)


def test_group_masks_prune_only_the_groups_norms():
  params = _random_variables(RECORD)["params"]
  masks = slimming.group_masks(params, RECORD, 0.3, multiple=2)
  assert set(masks) == {f"{norm}/{leaf}" for norm in GROUPS.values() for leaf in ("scale", "bias")}
  reference = slimming.channel_masks(params, 0.3, norms=list(GROUPS.values()), multiple=2)
  chex.assert_trees_all_equal(masks, reference)
  keep = slimming.keep_indices(masks, channels.channel_groups(RECORD))
  for conv, norm in GROUPS.items():
    np.testing.assert_array_equal(keep[conv], np.flatnonzero(np.asarray(masks[f"{norm}/scale"])))


@pytest.mark.parametrize("svd", [None, SVDSpec("channel", dense_first=False)])
def test_slim_slices_the_variables_and_records_the_widths(svd):
  record = RECORD.replace(svd=svd, masked_channels={"stem_bn": [0]})  # a format-1 mask: gone after the rebuild
  variables = _random_variables(record)
  record = record.replace(ranks=ranks(variables["params"]), original_ranks=ranks(variables["params"]))
  masks = slimming.group_masks(variables["params"], record, 0.4)
  slim, new, report = slimming.slim(variables, record, masks)
  keep = {conv: np.flatnonzero(np.asarray(masks[f"{norm}/scale"])) for conv, norm in GROUPS.items()}
  drop = {norm: np.flatnonzero(~np.asarray(masks[f"{norm}/scale"])).tolist() for norm in GROUPS.values()}
  assert new.widths == {conv: len(idx) for conv, idx in keep.items()} and new.pruned_channels == drop
  assert new.masked_channels is None and new.original_ranks == record.original_ranks
  chex.assert_trees_all_equal_shapes(slim, jax.eval_shape(new.build_model().init, jax.random.key(0),
                                                          np.zeros((1, 16, 16, 3), np.float32)))
  for conv, norm in GROUPS.items():
    block = conv.split("/")[0]
    for collection, leaf in (("params", "scale"), ("params", "bias"), ("batch_stats", "mean"), ("batch_stats", "var")):
      np.testing.assert_array_equal(slim[collection][block]["bn1"][leaf],
                                    np.asarray(variables[collection][block]["bn1"][leaf])[keep[conv]])
    if svd is None:  # dense: the kept output channels of conv1, the kept input channels of conv2
      np.testing.assert_array_equal(slim["params"][block]["conv1"]["kernel"],
                                    np.asarray(variables["params"][block]["conv1"]["kernel"])[..., keep[conv]])
      np.testing.assert_array_equal(slim["params"][block]["conv2"]["kernel"],
                                    np.asarray(variables["params"][block]["conv2"]["kernel"])[:, :, keep[conv]])
  counts = {"channels_before": 112, "channels_after": sum(new.widths.values())}
  expected = {**counts, "widths": dict(new.widths), "pruned_channels": drop}
  if svd is None:
    assert new.ranks == {} and report == expected
  else:
    assert new.ranks == ranks(slim["params"]) and new.ranks["stage1_block0/conv1"] <= len(keep["stage1_block0/conv1"])
    assert report == {**expected, "total_rank": sum(new.ranks.values()), "ranks": dict(new.ranks)}


def test_budget_masks_keep_the_largest_gammas_of_the_widest_fitting_architecture():
  params = _random_variables(RECORD)["params"]
  full = {"stage1_block0/conv1": 16, "stage2_block0/conv1": 32, "stage3_block0/conv1": 64}
  cost = {"stage1_block0/conv1": 7, "stage2_block0/conv1": 5, "stage3_block0/conv1": 3}
  macs = lambda a: 100 + sum(c * (a.widths or {}).get(p, full[p]) for p, c in cost.items())  # noqa: E731
  masks = slimming.budget_masks(params, RECORD, macs, 1.6, multiple=2)
  # NumPy: every global threshold over the groups' |γ|, widths rounded up to 2; the first (smallest t) that fits
  gammas = {conv: np.abs(np.asarray(params[conv.split("/")[0]]["bn1"]["scale"], np.float64)) for conv in full}
  limit = macs(RECORD) / 1.6
  for t in np.concatenate([[-np.inf], np.unique(np.concatenate(list(gammas.values())))]):
    widths = {p: min(g.size, -(-max(1, int(np.sum(g > t))) // 2) * 2) for p, g in gammas.items()}
    if macs(RECORD.replace(widths=widths)) <= limit:
      break
  for conv, norm in GROUPS.items():
    expected = np.zeros(full[conv], bool)
    expected[np.argsort(-gammas[conv], kind="stable")[:widths[conv]]] = True
    np.testing.assert_array_equal(masks[f"{norm}/scale"], expected)
    np.testing.assert_array_equal(masks[f"{norm}/bias"], expected)
  with pytest.raises(ValueError, match=r"slimming.macs_reduction=100.0: even one channel per group"):
    slimming.budget_masks(params, RECORD, macs, 100.0)


def test_channel_counts_read_the_record():
  params = _random_variables(RECORD)["params"]
  now = sum(norm_widths(params).values())
  assert slimming.channel_counts(RECORD, params) == {}
  assert slimming.channel_counts(RECORD.replace(pruned_channels={"a": [0, 3], "b": [1]}), params) == {
      "bn_channels_before": now + 3, "bn_channels_after": now}
  assert slimming.channel_counts(RECORD.replace(masked_channels={"a": [2]}), params) == {
      "bn_channels_before": now, "bn_channels_after": now - 1}
