"""Dense baseline of the quick Fashion-MNIST config: same model, data, optimizer and epochs; svd off."""

from experiments.configs import fashion_mnist


def get_config():
  """The Fashion-MNIST config with SVD, regularization and pruning off."""
  c = fashion_mnist.get_config()
  c.svd.enabled = False
  c.reg.update(orthogonality=0.0, sparsity=0.0)
  c.pruning.enabled = False
  c.final_prune.enabled = False
  return c
