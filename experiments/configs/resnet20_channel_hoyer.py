"""Paper setting, CIFAR-10 ResNet-20, channel-wise, Hoyer, λo = 1, Adam 1e-3, 164 epochs ÷10 at 50 %/75 %.

The paper sweeps λs to trade accuracy against FLOPs; the λs here (and in the sibling configs) is a
starting point of that sweep, not checked against the authors' start-up commands (not available
offline when this was written). Sweep with --config.reg.sparsity=...
"""

from experiments.configs import default


def get_config():
  """The defaults as 164 epochs + 82 fine-tune epochs, Hoyer λs = 0.003, final prune at energy 0.01."""
  c = default.get_config()
  c.finetune_epochs = 82  # 164 with regularization, final energy prune, 82 fine-tune (λs = 0)
  c.num_epochs = 164 + 82
  c.reg.sparsity_type, c.reg.sparsity = "hoyer", 0.003
  c.final_prune.energy = 0.01
  return c
