r"""CIFAR-10 ResNet-18 with SVD training and online energy pruning: SGD 0.01/0.9/5e-4, 1/(epoch+1) LR, Hoyer λs = 0.001,
energy pruning every 5 epochs from epoch 5, the last 10 of 60 epochs fine-tuning.

  command   python -m experiments.cifar_svd --config=resnet18_online_pruning --config.data_dir=/path/to/cifar10 \
                --workdir=runs/r18
  expected  not run here (no CIFAR-10 on this machine)
  time      about 1 day on this 2-core x86 CPU (estimate: 60 epochs at the measured ~35 img/s of a ResNet-18 train step)
"""

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
