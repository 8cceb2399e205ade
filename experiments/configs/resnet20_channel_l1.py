"""Paper, CIFAR-10 ResNet-20, channel-wise decomposition, l1 sparsity (λs = 0.0001)."""

from experiments.configs import resnet20_channel_hoyer


def get_config():
  """``resnet20_channel_hoyer`` with channel-wise decomposition and L1 sparsity, λs = 0.0001."""
  c = resnet20_channel_hoyer.get_config()
  c.svd.decomposition = "channel"
  c.reg.sparsity_type, c.reg.sparsity = "l1", 0.0001
  return c
