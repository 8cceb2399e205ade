"""SVD training and network slimming on one model (quick Fashion-MNIST setup): ResNet-8 channel-wise SVD with
Hoyer-Square sparsity and online energy pruning (as ``fashion_mnist.py``) plus BN-γ L1; after epoch 4, 40 % of the
block channels are slimmed (the SVD factors are sliced and re-decomposed), then 2 fine-tune epochs (λs = 0).

  python -m experiments.cifar_svd --config=experiments/configs/fashion_mnist_svd_slimming.py --workdir=runs/svd_slim
"""

from experiments.configs import fashion_mnist


def get_config():
  """``fashion_mnist.py`` plus BN-γ L1 1e-4 and 40 % of the block channels slimmed after epoch 4."""
  c = fashion_mnist.get_config()
  c.optimizer.bn_l1 = 1e-4
  c.slimming.update(enabled=True, amount=0.4, prune_epoch=4)
  return c
