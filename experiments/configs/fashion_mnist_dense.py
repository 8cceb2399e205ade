"""Dense baseline of the quick Fashion-MNIST config: same model, data, optimizer and epochs; svd off.

  command   python -m experiments.cifar_svd --config=fashion_mnist_dense --workdir=runs/fm_dense
  expected  91.44 % test accuracy, 74,522 params, 9.15 M MACs per image (docs/results.md)
  time      about 7–8 min on this 2-core x86 CPU (measured)
"""

from experiments.configs import fashion_mnist


def get_config():
  """The Fashion-MNIST config with SVD, regularization and pruning off."""
  c = fashion_mnist.get_config()
  c.svd.enabled = False
  c.reg.update(orthogonality=0.0, sparsity=0.0)
  c.pruning.enabled = False
  c.final_prune.enabled = False
  return c
