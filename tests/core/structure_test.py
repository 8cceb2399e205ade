import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsvd.core import structure as rk
from jaxsvd.core import tree
from jaxsvd.linen.layers import ConvSVD, DenseSVD


class Net(nn.Module):
  r: dict

  @nn.compact
  def __call__(self, x):
    x = ConvSVD(8, rank=self.r.get("conv"), name="conv")(x)
    x = nn.Conv(4, (3, 3), name="plain")(x)
    return DenseSVD(3, rank=self.r.get("blocks/head"), name="head")(x.mean((1, 2)))


def test_ranks_read_back_from_params():
  params = Net({"conv": 5, "blocks/head": 2}).init(jax.random.key(0), jnp.ones((1, 6, 6, 3)))["params"]
  assert rk.ranks(params) == {"conv": 5, "head": 2}
  assert rk.total_rank(rk.ranks(params)) == 7


def test_not_fooled_by_names():
  params = {"U": jnp.ones((3, 3)), "s": jnp.ones(4), "V": jnp.ones((3, 3))}  # r mismatch → not an SVD layer
  assert rk.ranks(params) == {}


def test_validate_ranks():
  with pytest.raises(ValueError, match="ranks\\['a'\\]"):
    rk.validate_ranks({"a": 0})


def test_norm_layers_found_by_structure_not_names():
  params = {"bn": {"scale": np.ones(4), "bias": np.zeros(4)}, "dense": {"kernel": np.ones((4, 3)), "bias": np.zeros(3)},
            "ln_no_bias": {"scale": np.ones(4)}, "odd": {"scale": np.ones(4), "bias": np.zeros(3)},
            "block": {"gn": {"scale": np.ones(2), "bias": np.zeros(2)}}}
  assert rk.norm_widths(params) == {"bn": 4, "block/gn": 2}


def test_tree_paths_are_one_convention():
  params = {"a": {"b": np.zeros(2), "c": [np.zeros(1), np.zeros(3)]}}
  assert list(tree.leaves_by_path(params)) == ["a/b", "a/c/0", "a/c/1"]
  assert tree.get_node(params, "a/b") is params["a"]["b"]
  replaced = tree.replace_nodes(params, {"a/b": "new"})
  assert replaced["a"]["b"] == "new" and isinstance(params["a"]["b"], np.ndarray)  # the input is untouched
  state = (jax.tree_util.SequenceKey(0), jax.tree_util.GetAttrKey("mu"), jax.tree_util.DictKey("a"),
           jax.tree_util.DictKey("b"))
  assert tree.trailing_dict_path(state) == "a/b" and tree.path_str(state) == "0/mu/a/b"
