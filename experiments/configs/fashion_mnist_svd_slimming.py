"""SVD training and network slimming on one model (quick Fashion-MNIST setup): ResNet-8 channel-wise SVD with
Hoyer-Square sparsity and online energy pruning (as ``fashion_mnist.py``) plus BN-γ L1; after epoch 4, 40 % of the
block channels are slimmed (the SVD factors are sliced and re-decomposed), then 2 fine-tune epochs (λs = 0).

  command   python -m experiments.cifar_svd --config=fashion_mnist_svd_slimming --workdir=runs/svd_slim
  expected  88.53 % test accuracy at 4.01× fewer MACs, 5.21× fewer params (rank 52, inner channels 112 → 67)
            (docs/results.md)
  time      about 7–8 min on this 2-core x86 CPU (measured)
"""

from experiments.configs import fashion_mnist


def get_config():
  """``fashion_mnist.py`` plus BN-γ L1 1e-4 and 40 % of the block channels slimmed after epoch 4."""
  c = fashion_mnist.get_config()
  c.optimizer.bn_l1 = 1e-4
  c.slimming.update(enabled=True, amount=0.4, prune_epoch=4)
  return c
