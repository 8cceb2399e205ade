import jax
import jax.numpy as jnp
import pytest

from jaxsvd import ranks as rk
from jaxsvd.layers import ConvSVD, DenseSVD
import flax.linen as nn


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
