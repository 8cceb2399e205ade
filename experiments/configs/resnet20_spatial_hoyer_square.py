"""Paper, CIFAR-10 ResNet-20, spatial-wise decomposition, hoyer_square sparsity (λs = 0.001)."""

from experiments.configs import resnet20_channel_hoyer


def get_config():
  """``resnet20_channel_hoyer`` with spatial-wise decomposition and Hoyer-Square sparsity, λs = 0.001."""
  c = resnet20_channel_hoyer.get_config()
  c.svd.decomposition = "spatial"
  c.reg.sparsity_type, c.reg.sparsity = "hoyer_square", 0.001
  return c
