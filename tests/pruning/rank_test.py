import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core.structure import iter_svd_layers, ranks
from jaxsvd.core.tree import replace_nodes, trailing_dict_path
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import Floors, Strategy, opt_state, rank, strategies
from jaxsvd.pruning.rank import keep_indices
from jaxsvd.training import optim
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.recompile import CountingJit
from jaxsvd.training.train_state import TrainState, train_step

S = np.array([0.1, 4.0, 0.5, 2.0, 1.0, 0.0])  # sorted |s|: 4, 2, 1, .5, .1, 0 ; Σs² = 21.26


def kept(strategy, s=S, original=None, floors=Floors()):
  return list(keep_indices(np.asarray(s), original or len(s), strategy, floors))


def test_count_strategy():
  assert kept(Strategy("count", prune_by=2)) == [1, 3, 4, 2]


def test_threshold_absolute_and_relative():
  assert kept(Strategy("threshold", threshold=0.5)) == [1, 3, 4, 2]
  assert kept(Strategy("threshold", threshold=0.3, threshold_mode="relative")) == [1, 3]  # t = 1.2


def test_ratio_strategy():
  assert kept(Strategy("ratio", reduce_by=0.5)) == [1, 3, 4]
  assert kept(Strategy("ratio", reduce_by=0.4)) == [1, 3, 4, 2]  # ceil(6·0.6) = 4


def test_energy_strategy_hand_worked():
  # cumulative energy: 16, 20, 21, 21.25, 21.26, 21.26 (total 21.26)
  assert kept(Strategy("energy", energy=0.1)) == [1, 3]  # 20 ≥ 0.9·21.26 = 19.134
  assert kept(Strategy("energy", energy=0.01)) == [1, 3, 4, 2]  # 21.25 ≥ 21.047, 21 < 21.047
  assert kept(Strategy("energy", energy=0.3)) == [1]  # 16 ≥ 14.88


HARSH = dict(prune_by=10, threshold=1.0, reduce_by=0.99, energy=0.99)  # each strategy reads its own field


@pytest.mark.parametrize("strategy", [n for n in strategies.names() if not strategies.resolve(n).is_global])
@pytest.mark.parametrize("s", [np.zeros(5), np.ones(5), np.full(5, 1e-30)])
def test_floors_hold_for_adversarial_s(strategy, s):
  cfg = Strategy.from_config({"strategy": strategy, **HARSH})
  assert 2 <= len(kept(cfg, s, floors=Floors(min_rank=2))) <= 5
  cfg = Strategy.from_config({"strategy": strategy, **HARSH, "threshold": 10.0})
  assert len(kept(cfg, s, original=8, floors=Floors(min_decay=0.5))) == 4  # ceil(0.5 · 8)


def test_rank_never_reaches_zero():
  assert len(kept(Strategy("count", prune_by=100), np.array([3.0]))) == 1


@pytest.mark.parametrize("kwargs, field", [
    (dict(strategy="magnitude"), "pruning.strategy='magnitude' is not one of"), (dict(energy=1.0), "pruning.energy"),
    (dict(energy=0.0), "pruning.energy"), (dict(strategy="ratio", reduce_by=1.0), "pruning.reduce_by"),
    (dict(strategy="count", prune_by=-1), "pruning.prune_by"),
    (dict(strategy="threshold", threshold=-1.0), "pruning.threshold")])
def test_bad_strategy_config_names_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    Strategy.from_config(kwargs, "pruning")


@pytest.mark.parametrize("kwargs, field", [(dict(min_rank=0), "final_prune.min_rank"),
                                           (dict(min_decay=1.5), "final_prune.min_decay")])
def test_bad_floors_config_names_the_field(kwargs, field):
  with pytest.raises(ValueError, match=field):
    Floors.from_config(kwargs, "final_prune")


def test_bad_opt_state_policy():
  with pytest.raises(ValueError, match="opt_state='keep' is not one of"):
    opt_state.opt_state_after(None, None, {}, {}, None, "keep")


def tiny_model(ranks_map=None):
  return build_model("resnet8", num_classes=4, svd=SVDSpec(mode="auto"), ranks=ranks_map)


@pytest.fixture(scope="module")
def resnet8():
  model = tiny_model()
  x = jax.random.normal(jax.random.key(0), (4, 12, 12, 3))
  return model, dict(model.init(jax.random.key(1), x)), x


def test_prune_equals_zeroing_dropped_singular_values(resnet8):
  model, variables, x = resnet8
  params = variables["params"]
  new_params, new_ranks, report = rank.prune(params, Strategy("energy", energy=0.3))
  assert report.changed and new_ranks == ranks(new_params)
  pruned_model = tiny_model(new_ranks)
  out_pruned = pruned_model.apply({**variables, "params": new_params}, x)
  nodes = {}
  for path, node in iter_svd_layers(params):
    mask = np.zeros(node["s"].shape[0]); mask[report.keep[path]] = 1
    nodes[path] = {**node, "s": node["s"] * mask}
  zeroed = replace_nodes(params, nodes)
  out_zeroed = model.apply({**variables, "params": zeroed}, x)
  chex.assert_trees_all_close(out_pruned, out_zeroed, atol=1e-4, rtol=1e-4)
  # The input params are untouched (pure) and non-SVD leaves pass through.
  assert ranks(params) != new_ranks
  chex.assert_trees_all_equal(params["stem"], new_params["stem"])


def test_nan_in_s_names_the_layer(resnet8):
  _, variables, _ = resnet8
  params = variables["params"]
  layer = params["stage1_block0"]["conv1"]
  bad = {**params, "stage1_block0": {**params["stage1_block0"], "conv1": {**layer, "s": layer["s"].at[0].set(jnp.nan)}}}
  with pytest.raises(ValueError, match="stage1_block0/conv1"):
    rank.prune(bad, Strategy())


@pytest.mark.parametrize("opt", [pytest.param("sgd", marks=pytest.mark.slow), "adam"])  # adam: both moments
def test_sliced_moments_equal_original_at_kept_indices(resnet8, opt):
  _, variables, _ = resnet8
  params = variables["params"]
  tx = optim.make_optimizer(dict(optimizer=opt, learning_rate=0.1, momentum=0.9), params, 10, 1)
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
  _, state = tx.update(grads, state, params)
  new_params, _, report = rank.prune(params, Strategy("ratio", reduce_by=0.5))
  sliced = opt_state.slice_opt_state(state, params, report.keep)
  tx.update(jax.tree.map(jnp.zeros_like, new_params), sliced, new_params)  # shapes now agree
  path, leaf = "stage2_block0/conv2", "U"
  idx = report.keep[path]
  old_leaves = [x for x in jax.tree_util.tree_flatten_with_path(state)[0] if _tail(x[0]) == f"{path}/{leaf}"]
  new_leaves = [x for x in jax.tree_util.tree_flatten_with_path(sliced)[0] if _tail(x[0]) == f"{path}/{leaf}"]
  assert len(old_leaves) == (2 if opt == "adam" else 1)
  for (_, old), (_, new) in zip(old_leaves, new_leaves):
    chex.assert_trees_all_equal(new, old[:, idx])
  counts = lambda st: [l for p, l in jax.tree_util.tree_flatten_with_path(st)[0] if "count" in jax.tree_util.keystr(p)]
  chex.assert_trees_all_equal(counts(sliced), counts(state))


def _tail(key_path):
  return trailing_dict_path(key_path)


def test_reinit_keeps_counts_and_zeros_moments(resnet8):
  _, variables, _ = resnet8
  params = variables["params"]
  tx = optim.make_optimizer(dict(optimizer="adam", schedule="linear"), params, 10, 1)
  state = tx.init(params)
  for _ in range(3):
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  new_params, _, report = rank.prune(params, Strategy("count", prune_by=1))
  fresh = opt_state.reinit_opt_state(tx, new_params, state)
  flat = {jax.tree_util.keystr(p): l for p, l in jax.tree_util.tree_flatten_with_path(fresh)[0]}
  assert all(int(v) == 3 for k, v in flat.items() if k.endswith(".count"))
  assert all(float(jnp.abs(v).max()) == 0 for k, v in flat.items() if ".mu" in k)


@pytest.mark.parametrize("policy", [pytest.param("reinit", marks=pytest.mark.slow), "slice"])
def test_train_prune_train_compiles_once_per_rank_set(resnet8, policy):
  _, variables, x = resnet8
  variables = jax.tree.map(jnp.copy, variables)  # the step donates its state; keep the fixture intact
  batch = {"image": x, "label": jnp.arange(4) % 4}
  tx = optim.make_optimizer(dict(optimizer="adam", learning_rate=1e-3), variables["params"], 10, 1)
  state = TrainState.create(tiny_model().apply, variables, tx)
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-2)
  step = CountingJit(train_step, static_argnums=(2,), donate_argnums=(0,))  # one jitted step for the whole run
  for _ in range(3):
    state, metrics = step(state, batch, reg)
  assert step.traces == 1
  for event in range(2):
    new_params, new_ranks, report = rank.prune(state.params, Strategy("ratio", reduce_by=0.3))
    state = opt_state.update_state(state, new_params, tiny_model(new_ranks).apply, report, policy)
    for _ in range(3):
      state, metrics = step(state, batch, reg)
    assert step.traces == 2 + event  # exactly one new compile per pruning event, none on ordinary steps
  assert np.isfinite(float(metrics["loss"])) and ranks(state.params) == new_ranks
  assert int(state.step) == 9
