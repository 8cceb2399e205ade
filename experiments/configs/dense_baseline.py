"""Dense baseline: the same ResNet-20 with svd off (same init and training code)."""

from experiments.configs import default


def get_config():
  """The defaults (CIFAR-10 ResNet-20, 164 epochs) with SVD and the final prune off."""
  c = default.get_config()
  c.svd.enabled = False
  c.final_prune.enabled = False
  c.num_epochs = 164
  return c
