"""The seed's setting: CIFAR-10 ResNet-18, SGD 0.01/0.9/5e-4, 1/(epoch+1) LR, online energy pruning every 5 epochs."""

from experiments.configs import default


def get_config():
  """ResNet-18, 60 epochs (10 fine-tune), SGD 0.01 with 1/(epoch+1) LR, energy pruning every 5 epochs from epoch 5."""
  c = default.get_config()
  c.model = "resnet18"
  c.num_epochs = 60
  c.optimizer.update(optimizer="sgd", learning_rate=0.01, momentum=0.9, weight_decay=5e-4, schedule="inverse_epoch")
  c.reg.update(orthogonality=1.0, sparsity=0.001, sparsity_type="hoyer")
  c.finetune_epochs = 10
  c.pruning.update(enabled=True, strategy="energy", energy=0.001, every=5, start=5)
  return c
