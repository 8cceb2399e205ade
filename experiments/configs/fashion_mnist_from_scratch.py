"""Pruning from scratch on the quick Fashion-MNIST setup: ResNet-8 (dense), 1 epoch of gate search on the
random init, block widths for 50 % of the MACs, then 6 epochs of training from scratch."""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with a 1-epoch gate search and a 50 % MACs budget."""
  c = fashion_mnist_dense.get_config()
  c.from_scratch.update(search_epochs=1, l1=1e-3, learning_rate=1e-2, budget=0.5)
  return c
