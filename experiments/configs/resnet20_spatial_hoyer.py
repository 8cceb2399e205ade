"""Paper, CIFAR-10 ResNet-20, spatial-wise decomposition, Hoyer."""

from experiments.configs import resnet20_channel_hoyer


def get_config():
  """``resnet20_channel_hoyer`` with spatial-wise decomposition (Hoyer, λs = 0.003)."""
  c = resnet20_channel_hoyer.get_config()
  c.svd.decomposition = "spatial"
  return c
