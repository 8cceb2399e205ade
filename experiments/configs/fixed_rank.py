r"""Fixed low-rank baseline: every SVD layer of the CIFAR-10 ResNet-20 at rank r, no regularization, no pruning.

Pick r with --config.svd.default_rank=4|8|16|32.

  command   python -m experiments.cifar_svd --config=fixed_rank --config.svd.default_rank=8 \
                --config.data_dir=/path/to/cifar10 \
                --workdir=runs/r20_rank8
  expected  not run here (no CIFAR-10 on this machine): below the dense ResNet-20, more so at small r
  time      about 8 h on this 2-core x86 CPU (estimate: 164 epochs at ~300 img/s, a low-rank ResNet-20 step)
"""

from experiments.configs import default


def get_config():
  """The defaults with every SVD layer at rank 8, no orthogonality or sparsity term and no final prune."""
  c = default.get_config()
  c.svd.default_rank = 8
  c.reg.update(orthogonality=0.0, sparsity=0.0)
  c.final_prune.enabled = False
  c.num_epochs = 164
  return c
