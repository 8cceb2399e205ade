"""Network slimming (Liu et al. 2017) to a MACs budget on the quick Fashion-MNIST setup: dense ResNet-8 trained with
an L1 penalty on BN γ, then after epoch 4 the one global |γ| threshold bisected so the rebuilt model has ≤ dense
MACs / 2, then 2 fine-tune epochs.

  command   python -m experiments.cifar_svd --config=fashion_mnist_slimming_budget --workdir=runs/fm_slimming_budget
  expected  summary.json flops_speedup ≥ 2; with --config.train_subset=10000 --config.num_epochs=3
            --config.finetune_epochs=1 --config.slimming.prune_epoch=2: MACs 9.15M -> 4.56M (2.01x), 50 of 112
            channels kept, test accuracy 0.804 (dense at the same settings 0.828); the full run is not measured
  time      about 7–8 min on this 2-core x86 CPU (estimate: as fashion_mnist_slimming)
"""

from experiments.configs import fashion_mnist_slimming


def get_config():
  """``fashion_mnist_slimming`` with ``slimming.macs_reduction`` = 2 instead of a channel fraction."""
  c = fashion_mnist_slimming.get_config()
  c.slimming.macs_reduction = 2.0
  return c
