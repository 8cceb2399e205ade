"""Quick offline demo: Fashion-MNIST (Debian dataset-fashion-mnist), ResNet-8 channel-wise SVD, Hoyer-Square sparsity,
online energy pruning, final prune and fine-tune (Yang et al. 2020 at demo size).

  command   python -m experiments.cifar_svd --config=fashion_mnist --workdir=runs/fmnist
  expected  90.49 % test accuracy, 3.68× fewer params and 3.14× fewer MACs than dense (total rank 224 → 54)
            (docs/results.md)
  time      4 min 38 s on this 2-core x86 CPU (measured 2026-12-07; 7–8 min when the machine is shared)
"""

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
