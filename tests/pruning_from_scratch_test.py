"""Pruning from scratch: block widths as data, gates learned on frozen random weights, the MACs budget search."""

import chex
import jax
import numpy as np
import pytest

from jaxsvd.losses import RegularizerConfig
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import from_scratch
from jaxsvd.structure import ranks
from jaxsvd.train_state import TrainState, train_step

X = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
BLOCKS = ["stage1_block0", "stage2_block0", "stage3_block0"]  # resnet8


def test_inner_widths_are_data_and_checked():
  model = build_model("resnet8", 10, SVDSpec(), inner_widths={"stage2_block0": 5})
  params = model.init(jax.random.key(0), X)["params"]
  assert ranks(params)["stage2_block0/conv1"] == 5  # conv1: 5 outputs; conv2: 5 inputs, V is (3·3·5, 32)
  chex.assert_shape(params["stage2_block0"]["conv2"]["V"], (45, 32))
  chex.assert_shape(params["stage2_block0"]["bn1"]["scale"], (5,))
  with pytest.raises(ValueError, match=r"inner_widths names \['stage9_block0'\]"):
    build_model("resnet8", 10, None, inner_widths={"stage9_block0": 4})
  with pytest.raises(ValueError, match="int >= 1"):
    build_model("resnet8", 10, None, inner_widths={"stage1_block0": 0})
  with pytest.raises(ValueError, match="only to the ResNets"):
    build_model("vgg11", 10, None, inner_widths={"x": 1})


def test_gates_start_at_one_and_change_nothing():
  plain, gated = build_model("resnet8", 10, None), build_model("resnet8", 10, None, gated=True)
  variables = gated.init(jax.random.key(0), X)
  assert sorted(from_scratch.gates(variables["params"])) == BLOCKS
  without = {**variables, "params": {k: {n: v for n, v in b.items() if n != "gate"} if isinstance(b, dict) else b
                                     for k, b in variables["params"].items()}}
  chex.assert_trees_all_close(gated.apply(variables, X), plain.apply(without, X), atol=1e-6)


def test_gate_search_trains_only_the_gates_and_l1_shrinks_them():
  model = build_model("resnet8", 10, None, gated=True)
  variables = model.init(jax.random.key(0), X)
  tx = from_scratch.gate_optimizer(variables["params"], 1e-2, 1.0)
  state = TrainState.create(model.apply, variables, tx)
  batch = {"image": X, "label": np.arange(4, dtype=np.int32)}
  for _ in range(3):
    state, _ = jax.jit(train_step, static_argnums=(2,))(state, batch, RegularizerConfig(0.0, 0.0))
  moved = {path for path, (a, b) in _pairs(state.params, variables["params"]).items() if np.any(a != b)}
  assert moved == {f"{block}/gate" for block in BLOCKS}
  assert all((g < 1).all() for g in from_scratch.gates(state.params).values())  # λ = 1 dominates CE


def _pairs(a, b):
  from jaxsvd.tree import leaves_by_path
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
