"""Unstructured global magnitude masks on the quick Fashion-MNIST setup: dense ResNet-8, its conv/dense kernels pruned
to 2× fewer nonzero params (of all params) after epoch 4, then 2 fine-tune epochs with the mask kept.

  command   python -m experiments.cifar_svd --config=fashion_mnist_masks --workdir=runs/fm_masks
  expected  summary.json params_nonzero = round(params_total / 2), macs_after = macs_before (an unstructured mask
            removes no MAC of a dense conv); with --config.train_subset=10000 --config.num_epochs=3
            --config.finetune_epochs=1: 37,501 of 75,002 params nonzero, test accuracy 0.823 (dense at the same
            settings 0.828); the full run is not measured
  time      about 8–10 min on this 2-core x86 CPU (estimate: the dense run's 7–8 min plus the masked fine-tune)
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with magnitude masks at ``param_reduction`` = 2 after epoch 4."""
  c = fashion_mnist_dense.get_config()
  c.masks.update(enabled=True, kind="magnitude", param_reduction=2.0)
  return c
