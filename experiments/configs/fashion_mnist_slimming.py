"""Network slimming (Liu et al. 2017) on the quick Fashion-MNIST setup: dense ResNet-8 trained with an L1 penalty on
BN γ, 40 % of the blocks' inner channels (smallest |γ|, one global threshold; the residual stream is not pruned)
removed after epoch 4 (the model is rebuilt narrower), then 2 fine-tune epochs.

  command   python -m experiments.cifar_svd --config=fashion_mnist_slimming --workdir=runs/fm_slimming
  expected  89.46 % test accuracy at 1.45× fewer MACs, 1.81× fewer params (inner channels 112 → 67) (docs/results.md)
  time      about 7–8 min on this 2-core x86 CPU (measured)
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with BN-γ L1 1e-4 and 40 % of the block channels slimmed after epoch 4."""
  c = fashion_mnist_dense.get_config()
  c.optimizer.bn_l1 = 1e-4
  c.slimming.update(enabled=True, amount=0.4, prune_epoch=4)
  return c
