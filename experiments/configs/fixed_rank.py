"""Fixed low-rank baseline (the seed's table): every SVD layer at rank r, no regularization, no pruning.

Pick r with --config.svd.default_rank=4|8|16|32.
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
