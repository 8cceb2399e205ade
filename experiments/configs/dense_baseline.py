"""Dense baseline: the same ResNet-20 with svd off (same init and training code)."""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.svd.enabled = False
  c.final_prune.enabled = False
  c.num_epochs = 164
  return c
