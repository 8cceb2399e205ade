"""Budget-targeted rank pruning meets its MACs target (checked with MACs counted by hand, in NumPy)."""

import dataclasses

import jax
import numpy as np
import optax
import pytest

from experiments.configs import default
from experiments.run.events import Context
from experiments.run.plan import make_plan
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks, svd_layers
from jaxsvd.models import SVDSpec
from jaxsvd.pruning import Floors, Schedule, Strategy, budget, prune
from jaxsvd.pruning.rank import keep_indices
from jaxsvd.training.train_state import TrainState

# ResNet-8 on 32×32×3, option A: (path, input size, in channels, out channels, stride) of every 3×3 conv (pad 1).
CONVS = [("stem", 32, 3, 16, 1), ("stage1_block0/conv1", 32, 16, 16, 1), ("stage1_block0/conv2", 32, 16, 16, 1),
         ("stage2_block0/conv1", 32, 16, 32, 2), ("stage2_block0/conv2", 16, 32, 32, 1),
         ("stage3_block0/conv1", 16, 32, 64, 2), ("stage3_block0/conv2", 8, 64, 64, 1)]


def numpy_macs(rank_map):
  """Σ per layer of Ho·Wo·min(9·c·n, r·(9·c + n)) (a channel-wise SVD conv runs dense or factored, whichever is
  cheaper), plus the dense classifier 64·10; a layer without a rank is dense."""
  total = 64 * 10
  for path, size, c, n, stride in CONVS:
    out = np.arange(0, size, stride).size  # (size + 2 − 3) // stride + 1
    dense = out * out * 9 * c * n
    total += dense if path not in rank_map else min(dense, out * out * rank_map[path] * (9 * c + n))
  return total


@pytest.fixture(scope="module")
def model():
  svd = SVDSpec("channel")
  arch = Architecture("resnet8", 10, (32, 32, 3), svd)
  shapes = jax.eval_shape(arch.build_model().init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
  rng = np.random.default_rng(0)  # random factors; s a decaying spectrum, as after sparsity training
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: np.exp(-np.arange(x.shape[0]) / rng.uniform(3, 12)) if p[-1].key == "s" else rng.normal(
          size=x.shape).astype(np.float32), shapes)
  full = ranks(params)
  return arch.replace(ranks=full, original_ranks=full), params


@pytest.mark.parametrize("reduction", [2.0, 4.0, 7.0])
def test_budget_meets_the_macs_target_within_one_percent(model, reduction):
  arch, params = model
  counter = budget.MacsCounter.for_architecture(arch, arch.ranks)
  assert counter.dense == numpy_macs({})
  new_params, new_ranks, report = prune(params, Strategy("budget", macs_reduction=reduction), macs=counter)
  target = numpy_macs({}) / reduction
  assert 0.99 * target <= numpy_macs(new_ranks) <= target
  assert ranks(new_params) == new_ranks and report.changed
  # least pruning: one more direction in any layer would exceed the target
  for path, r in new_ranks.items():
    if r < arch.ranks[path]:
      assert numpy_macs({**new_ranks, path: r + 1}) > target, path
  # the global energy: every layer keeps at least what the energy rule keeps at the bisected e
  s_sorted = {p: np.sort(np.abs(np.asarray(n["s"])))[::-1] for p, n in svd_layers(params).items()}
  _, e, _, _ = budget.keep_counts(s_sorted, lambda p, k: max(k, 1), counter, reduction)
  assert all(new_ranks[p] >= max(1, budget.energy_keep(s, e)) for p, s in s_sorted.items())


def test_budget_with_floors_and_an_unreachable_target(model):
  arch, params = model
  counter = budget.MacsCounter.for_architecture(arch, arch.ranks)
  _, new_ranks, _ = prune(params, Strategy("budget", macs_reduction=3.0), Floors(rank_multiple=4), macs=counter)
  assert all(r % 4 == 0 or r == arch.ranks[p] for p, r in new_ranks.items())
  assert numpy_macs(new_ranks) <= numpy_macs({}) / 3.0
  with pytest.raises(ValueError, match="macs_reduction=1000.0 cannot be met"):
    prune(params, Strategy("budget", macs_reduction=1000.0), macs=counter)
  with pytest.raises(ValueError, match="needs the model's MACs"):
    prune(params, Strategy("budget"))


def test_rank_multiple_rounds_up_within_the_rank():
  floors = Floors(min_rank=2, rank_multiple=8)
  assert [floors.apply(k, 64, 64) for k in (0, 3, 8, 9, 61)] == [8, 8, 8, 16, 64]
  assert floors.apply(9, 12, 64) == 12  # never above the current rank
  assert list(keep_indices(np.array([5.0, 4, 3, 2, 1, 0.5, 0.1, 0, 0, 0]), 10, Strategy("energy", energy=0.2),
                           Floors(rank_multiple=4))) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="rank_multiple must be an int >= 1"):
    Floors(rank_multiple=0)


@pytest.mark.parametrize("field, value, message", [
    ("macs_reduction", 0.5, "final_prune.macs_reduction must be a number >= 1, got 0.5"),
    ("rank_multiple", 0, "final_prune.rank_multiple must be an int >= 1, got 0"),
    ("strategy", "budgett", "final_prune.strategy")])
def test_config_fields_are_validated_in_one_line(field, value, message):
  c = default.get_config()
  c.final_prune.strategy = "budget"
  c.final_prune[field] = value
  with pytest.raises(ValueError, match=message.replace(".", r"\.")) as err:
    make_plan(c)
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="use prune"):
    keep_indices(np.ones(3), 3, Strategy("budget"))


def test_ramped_reduction_by_hand():
  # X = 4, K = 3 events: kept fraction f = 1 − (3/4)·g(k/3).
  cubic = [1 / (1 - 0.75 * (1 - (1 - k / 3) ** 3)) for k in (1, 2, 3)]  # 2.1176, 3.6, 4
  np.testing.assert_allclose(cubic, [36 / 17, 3.6, 4.0])
  np.testing.assert_allclose([budget.ramped_reduction(4.0, k, 3, "cubic") for k in (1, 2, 3)], cubic)
  np.testing.assert_allclose([budget.ramped_reduction(4.0, k, 3, "linear") for k in (1, 2, 3)], [4 / 3, 2.0, 4.0])
  assert [budget.ramped_reduction(4.0, k, 3) for k in (1, 2, 3)] == [4.0] * 3
  assert budget.ramped_reduction(4.0, 1, 1, "cubic") == 4.0
  with pytest.raises(ValueError, match="budget_ramp must be one of"):
    budget.ramped_reduction(4.0, 1, 3, "quadratic")


def test_schedule_counts_and_indexes_its_events():
  s = Schedule(every=2, start=2)
  assert [e for e in range(1, 9) if s.due(e, 7)] == [2, 4, 6] and s.count(7) == 3
  assert [s.index(e) for e in (1, 2, 4, 6)] == [0, 1, 2, 3]
  assert Schedule(start=5).count(3) == 0 and Schedule(every=1, start=1, stop=2).count(9) == 2


def test_online_budget_ramp_meets_each_events_target_within_one_percent(model):
  """Three online 'budget' events with budget_ramp='cubic' to 4×: the real event, MACs counted in NumPy."""
  arch, params = model
  c = default.get_config()
  c.num_epochs, c.finetune_epochs, c.final_prune.enabled = 3, 0, False
  c.pruning.update(enabled=True, strategy="budget", macs_reduction=4.0, budget_ramp="cubic", every=1, start=1)
  (online,) = make_plan(c).events
  for epoch in (None, 4):  # no epoch, or one the event is not due after: its place on the ramp is unknown
    with pytest.raises(ValueError, match="online prune: budget_ramp='cubic' needs the epoch"):
      online.strategy_at(epoch)
  model_ = arch.build_model()
  variables = {**model_.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)), "params": params}
  state = TrainState.create(model_.apply, variables, optax.sgd(0.1))
  ctx = Context(build_model=lambda a: a.build_model(), make_tx=lambda a, p: optax.sgd(0.1))
  dense = numpy_macs({})
  for epoch, target in zip((1, 2, 3), (36 / 17, 3.6, 4.0), strict=True):
    outcome = online.apply(state, arch, dataclasses.replace(ctx, epoch=epoch))
    state, arch = outcome.state, outcome.architecture
    assert 0.99 * dense / target <= numpy_macs(arch.ranks) <= dense / target, epoch
    np.testing.assert_allclose(outcome.entry["macs_reduction"], dense / numpy_macs(arch.ranks), rtol=1e-9)


@pytest.mark.parametrize("update, message", [
    (dict(strategy="budget", budget_ramp="quadratic"), "pruning.budget_ramp"),
    (dict(strategy="energy", budget_ramp="cubic"), "pruning.budget_ramp='cubic' needs pruning.strategy='budget'")])
def test_budget_ramp_is_validated_in_one_line(update, message):
  c = default.get_config()
  c.pruning.update(enabled=True, **update)
  with pytest.raises(ValueError, match=message.replace(".", r"\.")) as err:
    make_plan(c)
  assert "\n" not in str(err.value)


def test_a_counter_from_each_layers_dense_and_rank_one_cost():
  counter = budget.MacsCounter.from_layers({"a": (100, 30), "b": (50, 40)}, fixed=7)
  assert counter.dense == 157  # fixed + Σ dense
  assert counter.at_ranks({"a": 1, "b": 1}) == 7 + 30 + 40
  assert counter.at_ranks({"a": 3, "b": 2}) == 7 + 90 + 50  # b: 2·40 > 50, so it runs dense
  assert budget.MacsCounter.from_layers({"a": (10, 2)}, dense=99).dense == 99
