"""The rank-strategy registry (``jaxsvd.pruning.strategies``): each strategy's keep count against a NumPy
re-derivation, resolution by name, one-line errors, and a toy strategy registered here, used from a config and
through ``prune``."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import jaxsvd
from experiments.configs import default
from jaxsvd.core.validate import check_nonnegative
from jaxsvd.pruning import Floors, Strategy, budget, prune, strategies
from jaxsvd.pruning.rank import keep_indices

RNG = np.random.default_rng(0)
SPECTRA = [np.sort(RNG.gamma(0.5, size=RNG.integers(1, 24)))[::-1] for _ in range(60)]  # |s| sorted descending


def numpy_count(s, prune_by):
  return len(s) - prune_by


def numpy_threshold(s, threshold, mode):
  t = threshold * (max(s) if mode == "relative" else 1.0)
  return sum(1 for x in s if x >= t)


def numpy_ratio(s, reduce_by):
  return next(k for k in range(len(s) + 1) if k >= len(s) * (1 - reduce_by) - 1e-9)


def numpy_energy(s, e):
  total = float(np.sum(s**2))
  return next(k for k in range(1, len(s) + 1) if float(np.sum(s[:k] ** 2)) >= (1 - e) * total * (1 - 1e-12))


@pytest.mark.parametrize("make, derive", [
    (lambda p: Strategy("count", prune_by=int(p * 10)), lambda s, p: numpy_count(s, int(p * 10))),
    (lambda p: Strategy("threshold", threshold=p), lambda s, p: numpy_threshold(s, p, "absolute")),
    (lambda p: Strategy("threshold", threshold=p, threshold_mode="relative"),
     lambda s, p: numpy_threshold(s, p, "relative")),
    (lambda p: Strategy("ratio", reduce_by=p), numpy_ratio),
    (lambda p: Strategy("energy", energy=p), numpy_energy)], ids=["count", "absolute", "relative", "ratio", "energy"])
def test_each_strategy_keeps_what_numpy_derives(make, derive):
  for s, p in zip(SPECTRA, RNG.uniform(0.01, 0.95, len(SPECTRA)), strict=True):
    strategy = make(float(p))
    want = derive(s, float(p))
    assert strategy.keep_count(s) == want, (strategy, s)
    shuffled = RNG.permutation(s) * RNG.choice([-1.0, 1.0], len(s))  # keep_indices sorts |s| itself
    assert len(keep_indices(shuffled, len(s), strategy)) == min(len(s), max(want, 1))


def test_budget_is_global_and_meets_its_target_with_no_direction_to_spare():
  rng = np.random.default_rng(1)
  spectra = {f"layer{i}": np.sort(rng.gamma(0.5, size=n))[::-1] for i, n in enumerate((6, 9, 12))}
  cost = {"layer0": 5, "layer1": 3, "layer2": 7}  # MACs per kept direction
  macs = budget.MacsCounter(lambda r: sum(cost[p] * k for p, k in r.items()),
                            sum(cost[p] * len(s) for p, s in spectra.items()))
  strategy = Strategy("budget", macs_reduction=2.5)
  assert (strategy.is_global, strategy.needs_macs, strategy.can_ramp) == (True, True, True)
  counts = strategy.keep_counts(spectra, lambda p, k: max(k, 1), macs)
  target = macs.dense / 2.5
  assert macs.at_ranks(counts) <= target
  assert all(macs.at_ranks({**counts, p: k + 1}) > target for p, k in counts.items() if k < len(spectra[p]))
  with pytest.raises(ValueError, match="use prune"):
    strategy.keep_count(spectra["layer0"])
  with pytest.raises(ValueError, match="needs the model's MACs"):
    strategy.keep_counts(spectra, lambda p, k: k)
  assert strategy.ramped(1, 3, "linear") == Strategy("budget", macs_reduction=budget.ramped_reduction(2.5, 1, 3,
                                                                                                   "linear"))


def test_per_layer_strategies_do_not_ramp_or_decide_globally():
  for name in ("count", "threshold", "ratio", "energy"):
    strategy = Strategy(name)
    assert not (strategy.is_global or strategy.needs_macs or strategy.can_ramp)
    with pytest.raises(ValueError, match=f"strategy='{name}' has no ramp"):
      strategy.ramped(1, 2, "cubic")


def test_resolve_by_name_and_the_base_class_builds_the_registered_class():
  assert {"count", "threshold", "ratio", "energy", "budget"} <= set(strategies.names())
  assert strategies.resolve("energy") is strategies.Energy and strategies.resolve("budget") is strategies.Budget
  for name in strategies.names():
    strategy = Strategy(name)
    assert type(strategy) is strategies.resolve(name) and isinstance(strategy, Strategy) and strategy.name == name
  assert Strategy() == Strategy("energy") == Strategy(name="energy") == strategies.Energy()
  assert jaxsvd.Strategy is Strategy and Strategy("count", 3).prune_by == 3
  assert dataclasses.replace(Strategy("budget"), macs_reduction=4.0) == Strategy("budget", macs_reduction=4.0)


def test_describe_names_the_strategy_and_its_first_field():
  assert [Strategy(*a, **k).describe() for a, k in [
      (("energy",), dict(energy=0.05)), (("ratio",), dict(reduce_by=0.25)), (("count",), dict(prune_by=2)),
      (("threshold",), {}), (("budget",), dict(macs_reduction=3.0))]] == [
      "energy=0.05", "ratio (reduce_by=0.25)", "count (prune_by=2)", "threshold=0.001", "budget (macs_reduction=3)"]


def test_unknown_name_is_one_line_listing_the_registered_names():
  for build in (lambda: Strategy("magnitude"), lambda: strategies.resolve("magnitude")):
    with pytest.raises(ValueError) as err:
      build()
    assert str(err.value) == f"strategy='magnitude' is not one of {strategies.names()}"
  with pytest.raises(ValueError, match=r"^final_prune\.strategy='magnitude' is not one of \(") as err:
    Strategy.from_config({"strategy": "magnitude"}, "final_prune")
  assert "\n" not in str(err.value)


def test_a_foreign_field_is_one_line_naming_the_field_and_the_strategy():
  with pytest.raises(ValueError) as err:
    Strategy("count", energy=0.1)
  assert str(err.value) == "energy is not a field of strategy 'count' (its fields: prune_by)"
  with pytest.raises(ValueError, match="macs_reduction is not a field of strategy 'energy'"):
    strategies.Energy(macs_reduction=2.0)


def test_from_config_reads_only_the_named_strategys_fields():
  every = ml_collections.ConfigDict(dict(strategy="ratio", energy=7.0, prune_by=-3, threshold=-1.0, reduce_by=0.5,
                                         macs_reduction=0.1, min_rank=2, opt_state="reinit"))
  assert Strategy.from_config(every, "pruning") == Strategy("ratio", reduce_by=0.5)  # the bad foreign values unread
  every.reduce_by = 1.0
  with pytest.raises(ValueError, match=r"^pruning\.reduce_by must be in \[0\.0, 1\.0\)"):
    Strategy.from_config(every, "pruning")
  assert Strategy.from_config({}) == Strategy()  # no `strategy` field: 'energy'
  assert strategies.Count.from_config({"strategy": "energy", "prune_by": 4}) == Strategy("count", prune_by=4)


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(8)(nn.relu(nn.Dense(24)(x)))


@dataclasses.dataclass(frozen=True)
class AboveMean(Strategy):
  """Toy: keep the directions with |s| ≥ factor · mean |s|."""
  factor: float = 1.0

  def __post_init__(self):
    check_nonnegative("factor", self.factor)

  def keep_count(self, s_sorted):
    return int(np.sum(s_sorted >= self.factor * np.mean(s_sorted))) if len(s_sorted) else 0


@pytest.fixture
def above_mean():
  strategies.register("above_mean")(AboveMean)
  yield AboveMean
  strategies.unregister("above_mean")


def test_a_registered_toy_strategy_works_from_a_config_and_through_prune(above_mean):
  assert "above_mean" in strategies.names() and strategies.config_defaults()["factor"] == 1.0
  c = default.get_config()  # the experiments' sections get the new field without an edit
  assert c.pruning.factor == c.final_prune.factor == 1.0
  c.final_prune.update(strategy="above_mean", factor=0.5)
  strategy = Strategy.from_config(c.final_prune, "final_prune")
  assert strategy == above_mean(factor=0.5) and strategy.describe() == "above_mean (factor=0.5)"
  with pytest.raises(ValueError, match=r"^final_prune\.factor must be a finite number >= 0"):
    Strategy.from_config({"strategy": "above_mean", "factor": -1.0}, "final_prune")

  model = jaxsvd.svdify(_MLP())
  params = model.init(jax.random.key(0), jnp.ones((1, 16)))["params"]
  _, new_ranks, report = prune(params, strategy, Floors(min_rank=2))
  for path, node in jaxsvd.svd_layers(params).items():
    s = np.abs(np.asarray(node["s"], np.float64))
    assert new_ranks[path] == max(2, int(np.sum(s >= 0.5 * s.mean()))), path
  assert report.changed


def test_register_rejects_what_a_registry_cannot_hold(above_mean):
  with pytest.raises(ValueError, match="'above_mean' is already registered"):
    strategies.register("above_mean")(above_mean)
  assert strategies.register("above_mean", replace=True)(above_mean) is above_mean

  class NotADataclass(Strategy):
    def keep_count(self, s_sorted):
      return 1

  @dataclasses.dataclass(frozen=True)
  class NoDefault(Strategy):
    k: int

    def keep_count(self, s_sorted):
      return self.k

  @dataclasses.dataclass(frozen=True)
  class NoRule(Strategy):
    k: int = 1

  @dataclasses.dataclass(frozen=True)
  class Reserved(Strategy):
    strategy: str = "x"

    def keep_count(self, s_sorted):
      return 1

  for cls, message in [(NotADataclass, "dataclass"), (NoDefault, "NoDefault.k needs a default"),
                       (NoRule, "define keep_count"), (Reserved, "may not be called 'strategy'"), (int, "subclass")]:
    with pytest.raises(TypeError, match=message):
      strategies.register("toy")(cls)
  assert "toy" not in strategies.names()
  with pytest.raises(TypeError, match="non-frozen"):
    dataclasses.dataclass(type("Mutable", (Strategy,), {"__annotations__": {"k": int}, "k": 1}))


def test_unregister_an_unknown_name_lists_the_registered_ones():
  with pytest.raises(ValueError, match=r"strategy='nope' is not one of \('budget'"):
    strategies.unregister("nope")
