"""Network slimming: global |γ| threshold, exact-zero channels, masks as JSON data."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core.structure import norm_scales, norm_widths
from jaxsvd.pruning import masks as M
from jaxsvd.pruning import slimming

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
