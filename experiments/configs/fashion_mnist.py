"""Quick offline demo: Fashion-MNIST (Debian dataset-fashion-mnist), ResNet-8 channel-wise SVD,
Hoyer-Square sparsity, online energy pruning, final prune and fine-tune; minutes on 2 CPU cores."""

from experiments.configs import default


def get_config():
  """Fashion-MNIST ResNet-8, 6 epochs (2 fine-tune), Adam 2e-3 cosine, Hoyer-Square λs = 0.01, online energy pruning."""
  c = default.get_config()
  c.model = "resnet8"
  c.dataset = "fashion_mnist"
  c.augment = False
  c.batch_size = 128
  c.num_epochs = 6
  c.optimizer.update(optimizer="adam", learning_rate=2e-3, schedule="cosine")
  c.reg.update(orthogonality=1.0, sparsity=0.01, sparsity_type="hoyer_square")
  c.finetune_epochs = 2
  c.pruning.update(enabled=True, strategy="energy", energy=0.02, every=1, start=2)
  c.final_prune.energy = 0.05
  return c
