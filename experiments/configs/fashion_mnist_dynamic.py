"""Dynamic pruning on the quick Fashion-MNIST setup: dense ResNet-8 whose smallest-|w| kernel entries are zeroed at
every forward pass from the first step (2× fewer nonzero params of all params; threshold recomputed inside jit,
straight-through gradients), the mask fixed after epoch 4, then 2 fine-tune epochs with it.

  command   python -m experiments.cifar_svd --config=fashion_mnist_dynamic --workdir=runs/fm_dynamic
  expected  summary.json params_nonzero = round(params_total / 2), MACs unchanged; with --config.train_subset=10000
            --config.num_epochs=3 --config.finetune_epochs=1: 37,501 of 75,002 params nonzero, test accuracy 0.826
            (dense at the same settings 0.828); the full run is not measured
  time      about 10–12 min on this 2-core x86 CPU (estimate: the dense run's 7–8 min plus the per-step threshold)
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with dynamic pruning at ``param_reduction`` = 2, fixed after epoch 4."""
  c = fashion_mnist_dense.get_config()
  c.masks.update(enabled=True, kind="dynamic", param_reduction=2.0)
  return c
