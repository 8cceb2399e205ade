"""Paper, CIFAR-10 ResNet-20, channel-wise, Hoyer (λs = 0.003 ... 0.03 trade off accuracy/FLOPs), λo = 1."""

from experiments.configs import default


def get_config():
  c = default.get_config()
  c.pruning.finetune_epochs = 82  # 164 with regularization, final energy prune, 82 fine-tune (λs = 0)
  c.num_epochs = 164 + 82
  c.reg.sparsity_type, c.reg.sparsity = "hoyer", 0.003
  c.final_prune.energy = 0.01
  return c
