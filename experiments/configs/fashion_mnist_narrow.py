"""Dense ResNet-8 with every block's inner width scaled by one factor to 2× fewer MACs than dense, trained from
scratch on the quick Fashion-MNIST setup (6 epochs, the last 2 at the cosine schedule's tail; no pruning).

  command   python -m experiments.cifar_svd --config=fashion_mnist_narrow --workdir=runs/fm_narrow
  expected  summary.json flops_speedup ≥ 2 (MACs ≤ dense / 2), widths in the checkpoint's record; with
            --config.train_subset=10000 --config.num_epochs=3 --config.finetune_epochs=1: MACs 9.15M -> 4.46M
            (2.05x), 112 -> 53 group channels, test accuracy 0.791 (dense at the same settings 0.828); the full run
            is not measured
  time      about 5–7 min on this 2-core x86 CPU (estimate: the dense run's 7–8 min at half the MACs)
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with ``narrow.macs_reduction`` = 2."""
  c = fashion_mnist_dense.get_config()
  c.narrow.macs_reduction = 2.0
  return c
