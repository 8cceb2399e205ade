"""The ImageNet ResNet-50's MACs, dense and in SVD form, against a hand count of its layers (torchvision's layout:
7×7/2 stem, 3×3/2 max-pool, bottlenecks (3, 4, 6, 3) of widths 64…512 × 4 with the stride on the 3×3 conv and a 1×1
projection on each stage's first block, a 2048 → 1000 classifier) and torchvision's published 4.09 GFLOPS (MACs)."""

import jax
import numpy as np

from jaxsvd.core.structure import ranks as read_ranks
from jaxsvd.linen import flops
from jaxsvd.linen.svdifylib import abstract_init
from jaxsvd.models import SVDSpec, build_model


def hand_count(rank_of=lambda path: None) -> int:
  """Σ over convs of H_out·W_out·(kh·kw·c·n), or for a rank-r channel-wise SVD conv the cheaper of that and
  H_out·W_out·(kh·kw·c·r + r·n); ``rank_of(path)`` gives r (None: dense)."""

  def conv(path, hw, k, c, n):
    dense = hw * hw * k * k * c * n
    r = rank_of(path)
    return dense if r is None else min(dense, hw * hw * (k * k * c * r + r * n))

  macs, size, inplanes = conv("stem", 112, 7, 3, 64), 56, 64
  for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512)), start=1):
    for b in range(blocks):
      stride = 2 if (b == 0 and stage > 1) else 1
      out = size // stride
      name = f"stage{stage}_block{b}"
      macs += conv(f"{name}/conv1", size, 1, inplanes, width) + conv(f"{name}/conv2", out, 3, width, width)
      macs += conv(f"{name}/conv3", out, 1, width, 4 * width)
      if b == 0:
        macs += conv(f"{name}/proj", out, 1, inplanes, 4 * width)
      size, inplanes = out, 4 * width
  r = rank_of("classifier")
  return macs + (2048 * 1000 if r is None else min(2048 * 1000, r * (2048 + 1000)))


def test_dense_resnet50_macs_equal_the_hand_count_and_torchvision():
  macs = flops.count(build_model("resnet50", 1000), (224, 224, 3)).macs
  assert macs == hand_count()
  assert abs(macs / 4.09e9 - 1) < 0.005, macs  # torchvision's ResNet50_Weights table: 4.09 GFLOPS


def test_svd_resnet50_macs_equal_the_hand_count_at_rank_8():
  model = build_model("resnet50", 1000, SVDSpec(decomposition="channel", default_rank=8))
  params = abstract_init(model, jax.ShapeDtypeStruct((1, 224, 224, 3), np.float32), train=False)["params"]
  layer_ranks = read_ranks(params)
  assert layer_ranks and set(layer_ranks.values()) == {8}
  macs = flops.count(model, (224, 224, 3)).macs
  assert macs == hand_count(layer_ranks.get)
  assert macs < hand_count() / 5
