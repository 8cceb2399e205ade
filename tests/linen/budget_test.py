"""``jaxsvd.linen.budget``: the budget's ``MacsCounter`` of a linen model equals ``flops.count`` at any ranks."""

import flax.linen as nn

from jaxsvd.linen import budget as linen_budget
from jaxsvd.linen import flops
from jaxsvd.linen.svdifylib import svdify


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), padding="SAME")(x))
    x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2), padding="SAME")(x))
    return nn.Dense(4)(x.reshape(x.shape[0], -1))


def test_the_counter_is_the_flops_count_of_the_model_at_those_ranks():
  shape, paths = (8, 8, 3), ["Conv_1", "Dense_0"]
  svd_model = svdify(Net(), skip=("Conv_0",))
  counter = linen_budget.macs_counter(Net(), svd_model.with_ranks({p: 1 for p in paths}), paths, shape)
  assert counter.dense == flops.count(Net(), shape).macs
  for ranks in ({"Conv_1": 1, "Dense_0": 1}, {"Conv_1": 5, "Dense_0": 3}, {"Conv_1": 16, "Dense_0": 4}):
    assert counter.at_ranks(ranks) == flops.count(svd_model.with_ranks(ranks), shape).macs, ranks
