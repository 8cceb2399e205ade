import flax.linen as nn

from jaxsvd.linen import flops
from jaxsvd.linen.layers import ConvSVD, DenseSVD


class SmallNet(nn.Module):
  r: int | None = None
  decomposition: str = "channel"

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(8, (3, 3), padding="SAME", use_bias=False)(x)  # 10x10x3 -> 10x10x8
    x = ConvSVD(16, (3, 3), (2, 2), "SAME", rank=self.r, decomposition=self.decomposition)(x)  # -> 5x5x16
    return DenseSVD(4, rank=2)(x.reshape(x.shape[0], -1))  # 400 -> 4


def test_hand_count_small_conv_net():
  report = flops.count(SmallNet(r=3), (10, 10, 3))
  conv0 = 10 * 10 * 3 * 3 * 3 * 8  # 21600
  svd_conv = 5 * 5 * 3 * (3 * 3 * 8 + 16)  # factored channel: 6600 (< dense 5·5·72·16 = 28800)
  head = 2 * (400 + 4)  # 808
  assert report.macs == conv0 + svd_conv + head
  assert report.layers["ConvSVD_0"].params == 3 * (16 + 72)
  assert report.layers["DenseSVD_0"].params == 2 * 404 + 4  # + bias
  assert report.params == 3 * 3 * 3 * 8 + 3 * 88 + 812


def test_spatial_hand_count_and_full_rank_is_dense():
  report = flops.count(SmallNet(r=2, decomposition="spatial"), (10, 10, 3))
  # kh×1 conv stride (2,1): 5 × 10 outputs × (3·8) × 2 ; then 1×kw stride (1,2): 5 × 5 × (3·2) × 16
  assert report.layers["ConvSVD_0"].macs == 5 * 10 * 24 * 2 + 5 * 5 * 6 * 16
  full = flops.count(SmallNet(r=None), (10, 10, 3))
  assert full.layers["ConvSVD_0"].macs == 5 * 5 * 72 * 16
  assert full.layers["ConvSVD_0"].params == 72 * 16
