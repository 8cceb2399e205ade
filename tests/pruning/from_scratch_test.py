"""Pruning from scratch: block widths as data, gates learned on frozen random weights, the MACs budget search; the
search's set-up and report; the uniform narrowing of a record."""

import chex
import jax
import numpy as np
import optax
import pytest

from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.linen import flops
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import channels, from_scratch
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.train_state import TrainState, train_step

X = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
BLOCKS = ["stage1_block0", "stage2_block0", "stage3_block0"]  # resnet8


def test_widths_are_data_and_checked():
  model = build_model("resnet8", 10, SVDSpec(), widths={"stage2_block0/conv1": 5})
  params = model.init(jax.random.key(0), X)["params"]
  assert ranks(params)["stage2_block0/conv1"] == 5  # conv1: 5 outputs; conv2: 5 inputs, V is (3·3·5, 32)
  chex.assert_shape(params["stage2_block0"]["conv2"]["V"], (45, 32))
  chex.assert_shape(params["stage2_block0"]["bn1"]["scale"], (5,))
  with pytest.raises(ValueError, match=r"widths names \['stage9_block0/conv1'\], which are not prunable convs"):
    build_model("resnet8", 10, None, widths={"stage9_block0/conv1": 4})
  with pytest.raises(ValueError, match="int >= 1"):
    build_model("resnet8", 10, None, widths={"stage1_block0/conv1": 0})
  with pytest.raises(ValueError, match="only to the ResNets"):
    build_model("vgg11", 10, None, gated=True)
  vgg = build_model("vgg11", 10, None, widths={"conv2": 7})
  chex.assert_shape(vgg.init(jax.random.key(0), X)["params"]["conv3"]["kernel"], (3, 3, 7, 256))


def test_gates_start_at_one_and_change_nothing():
  plain, gated = build_model("resnet8", 10, None), build_model("resnet8", 10, None, gated=True)
  variables = gated.init(jax.random.key(0), X)
  paths = from_scratch.gate_paths(gated.channel_groups(), "block")
  assert sorted(from_scratch.gates(variables["params"], paths)) == [f"{b}/conv1" for b in BLOCKS]
  without = {**variables, "params": {k: {n: v for n, v in b.items() if n != "gate"} if isinstance(b, dict) else b
                                     for k, b in variables["params"].items()}}
  chex.assert_trees_all_close(gated.apply(variables, X), plain.apply(without, X), atol=1e-6)


def test_gate_search_trains_only_the_gates_and_l1_shrinks_them():
  model = build_model("resnet8", 10, None, gated=True)
  variables = model.init(jax.random.key(0), X)
  paths = from_scratch.gate_paths(model.channel_groups(), "block")
  tx = from_scratch.gate_optimizer(paths.values(), 1e-2, 1.0, "l1")
  state = TrainState.create(model.apply, variables, tx)
  batch = {"image": X, "label": np.arange(4, dtype=np.int32)}
  for _ in range(3):
    state, _ = jax.jit(train_step, static_argnums=(2,))(state, batch, RegularizerConfig(0.0, 0.0))
  moved = {path for path, (a, b) in _pairs(state.params, variables["params"]).items() if np.any(a != b)}
  assert moved == {f"{block}/gate" for block in BLOCKS}
  gate_values = from_scratch.gates(state.params, paths)
  assert all((g < 1).all() for g in gate_values.values())  # λ = 1 dominates CE


def test_budget_loss_gradient_against_hand_computed_value():
  gammas = [np.array([0.5, -0.2, 0.0], np.float32), np.array([0.9], np.float32)]
  # Σ|γ| = 1.6 over C = 4 channels; r = 0.25: Ω = (0.4 − 0.25)² = 0.0225, ∂Ω/∂γ = 2·0.15·sign(γ)/4 = 0.075·sign(γ)
  np.testing.assert_allclose(from_scratch.budget_loss(gammas, 0.25), 0.0225, rtol=1e-6)
  params = {"a": {"scale": gammas[0]}, "b": {"scale": gammas[1]}, "w": np.ones(2, np.float32)}
  tx = from_scratch.budget_gradient(2.0, ["a/scale", "b/scale"], 0.25)
  updates, _ = tx.update(jax.tree.map(np.zeros_like, params), optax.EmptyState(), params)
  np.testing.assert_allclose(updates["a"]["scale"], 2.0 * 0.075 * np.array([1, -1, 0]), rtol=1e-6)
  np.testing.assert_allclose(updates["b"]["scale"], [2.0 * 0.075], rtol=1e-6)
  np.testing.assert_array_equal(updates["w"], np.zeros(2))
  autodiff = jax.grad(lambda g: from_scratch.budget_loss(g, 0.25))(gammas)  # away from γ = 0 they agree
  np.testing.assert_allclose(autodiff[0][:2], 0.075 * np.array([1, -1]), rtol=1e-6)


def test_bn_gate_search_on_vgg_trains_only_gammas_toward_the_ratio():
  model = build_model("vgg11", 10, None)
  variables = model.init(jax.random.key(0), X)
  paths = from_scratch.gate_paths(model.channel_groups(), "bn")
  variables["params"] = from_scratch.init_gates(variables["params"], paths.values(), 0.5)
  # ∂Ω/∂γ = 2·(mean|γ| − r)/C per γ with C = 2752 channels: λ = 1e4 makes it ≈ 2, above the CE gradient.
  tx = from_scratch.gate_optimizer(paths.values(), 5e-2, 1e4, "budget", ratio=0.2)
  state = TrainState.create(model.apply, variables, tx)
  batch = {"image": X, "label": np.arange(4, dtype=np.int32)}
  step = jax.jit(train_step, static_argnums=(2,))
  for _ in range(5):
    state, _ = step(state, batch, RegularizerConfig(0.0, 0.0))
  moved = {path for path, (a, b) in _pairs(state.params, variables["params"]).items() if np.any(a != b)}
  assert moved == set(paths.values())  # only the γ of the channel groups (β, kernels frozen)
  mean_gate = np.mean(np.concatenate(list(from_scratch.gates(state.params, paths).values())))
  assert mean_gate < 0.35  # from 0.5 toward r = 0.2 (Adam: ≤ 0.05 per step)


def test_bisection_meets_a_macs_target_within_half_a_percent():
  model = build_model("vgg11", 10, None)
  groups = model.channel_groups()
  rng = np.random.default_rng(0)
  gate_values = {g.conv: rng.uniform(size=c) for g, c in zip(groups, (64, 128, 256, 256, 512, 512, 512, 512))}
  macs_of = lambda widths: flops.count(build_model("vgg11", 10, None, widths=widths), (32, 32, 3)).macs  # noqa: E731
  full = macs_of({})
  widths = from_scratch.widths_for_budget(gate_values, macs_of, 0.5)
  assert 0.995 * 0.5 * full <= macs_of(widths) <= 0.5 * full


def _pairs(a, b):
  la, lb = leaves_by_path(a), leaves_by_path(b)
  return {p: (np.asarray(la[p]), np.asarray(lb[p])) for p in la}


def test_budget_search_is_the_widest_fitting_architecture():
  gate_values = {"a": np.array([0.9, 0.1, 0.5, 0.3]), "b": np.array([0.2, 0.8])}
  macs_of = lambda w: 10 * w["a"] + 100 * w["b"]  # noqa: E731 - a monotone stand-in for flops.count
  widths = from_scratch.widths_for_budget(gate_values, macs_of, 0.5)  # full 240 → ≤ 120
  assert widths == {"a": 2, "b": 1} and macs_of(widths) <= 120  # t = 0.3: a keeps 0.9, 0.5; b keeps 0.8
  assert macs_of(from_scratch.widths_at(gate_values, 0.2)) > 120  # one more channel would not fit
  assert from_scratch.widths_for_budget(gate_values, macs_of, 1.0) == {"a": 4, "b": 2}
  with pytest.raises(ValueError, match="even one channel per block"):
    from_scratch.widths_for_budget(gate_values, macs_of, 0.1)
  with pytest.raises(ValueError, match="budget must be in"):
    from_scratch.widths_for_budget(gate_values, macs_of, 0.0)


def test_budget_search_with_a_channel_multiple_counts_the_rounding():
  gate_values = {"a": np.linspace(0.05, 1.0, 20), "b": np.linspace(0.01, 0.5, 24)}
  macs_of = lambda w: 10 * w["a"] + 30 * w["b"]  # noqa: E731 - a monotone stand-in for flops.count
  full = macs_of({"a": 20, "b": 24})
  widths = from_scratch.widths_for_budget(gate_values, macs_of, 0.5, multiple=8)
  assert all(w % 8 == 0 or w == gate_values[p].size for p, w in widths.items())
  assert macs_of(widths) <= 0.5 * full
  # brute force over every global threshold: the search returns the first (widest) rounded architecture that fits
  candidates = np.concatenate([[-np.inf], np.unique(np.concatenate(list(gate_values.values())))])
  fitting = [from_scratch.widths_at(gate_values, t, 8) for t in candidates
             if macs_of(from_scratch.widths_at(gate_values, t, 8)) <= 0.5 * full]
  assert widths == fitting[0]
  assert from_scratch.widths_at({"a": np.ones(20)}, 0.0, 8) == {"a": 20}  # capped at the group's size
  assert from_scratch.widths_at({"a": np.arange(20.0)}, 16.5, 8) == {"a": 8}  # 3 kept → 8
  with pytest.raises(ValueError, match="channel_multiple"):
    from_scratch.widths_for_budget(gate_values, macs_of, 0.5, multiple=0)


def test_prepare_search_sets_the_gates_and_trains_only_them():
  model = build_model("resnet8", 10, None, gated=True)
  shapes = jax.eval_shape(model.init, jax.random.key(0), X)["params"]
  params = jax.tree.map(lambda a: np.ones(a.shape, np.float32), shapes)
  params, tx, paths = from_scratch.prepare_search(params, model.channel_groups(), "block", 0.5, 1e-2, 1.0, "l1")
  assert paths == from_scratch.gate_paths(model.channel_groups(), "block")
  leaves = leaves_by_path(params)
  for path, leaf in leaves.items():
    np.testing.assert_array_equal(leaf, np.full(np.shape(leaf), 0.5 if path in paths.values() else 1.0))
  updates, _ = tx.update(jax.tree.map(np.ones_like, params), tx.init(params), params)
  moved = {p for p, u in leaves_by_path(updates).items() if np.any(np.asarray(u) != 0)}
  assert moved == set(paths.values())
  with pytest.raises(ValueError, match="from_scratch.penalty"):
    from_scratch.prepare_search(params, model.channel_groups(), "block", 0.5, 1e-2, 1.0, "l2")


def test_search_report_is_the_budget_search_and_its_counts():
  gate_values = {"a": np.array([0.9, 0.1, 0.5, 0.3]), "b": np.array([0.2, 0.8])}
  macs_of = lambda w: 10 * w["a"] + 100 * w["b"]  # noqa: E731 - a monotone stand-in for flops.count
  report = from_scratch.search_report(gate_values, macs_of, 0.5)
  assert report == {"widths": {"a": 2, "b": 1}, "macs_full": 240, "macs_pruned": 120, "budget": 0.5,
                    "channels_full": 6, "channels_pruned": 3}
  assert report["widths"] == from_scratch.widths_for_budget(gate_values, macs_of, 0.5)


def test_narrow_is_the_largest_uniform_factor_under_the_budget():
  record = Architecture("resnet8", 10, (16, 16, 3))
  full = {"stage1_block0/conv1": 16, "stage2_block0/conv1": 32, "stage3_block0/conv1": 64}
  assert channels.group_widths(record) == full
  cost = {"stage1_block0/conv1": 7, "stage2_block0/conv1": 5, "stage3_block0/conv1": 3}
  macs = lambda a: 100 + sum(c * (a.widths or {}).get(p, full[p]) for p, c in cost.items())  # noqa: E731
  narrowed, report = from_scratch.narrow(record, macs, 2.5, multiple=4)
  # NumPy: widths ⌈f·C⌉ rounded up to 4 for a fine grid of f; the largest f that fits gives the widths
  uniform = lambda f: {p: min(c, 4 * -(-int(np.ceil(f * c - 1e-9)) // 4)) for p, c in full.items()}  # noqa: E731
  grid = np.linspace(0.0, 1.0, 1025)[1:]  # every j/C of the three groups among them
  fitting = [f for f in grid if macs(record.replace(widths=uniform(f))) <= macs(record) / 2.5]
  assert narrowed.widths == uniform(fitting[-1]) and narrowed.replace(widths=None) == record
  assert report == {"channels_full": 112, "channels_narrow": sum(narrowed.widths.values()),
                    "macs_full": macs(record), "macs_narrow": macs(narrowed)}
  with pytest.raises(ValueError, match=r"narrow.macs_reduction=100.0: even one channel per group"):
    from_scratch.narrow(record, macs, 100.0)
