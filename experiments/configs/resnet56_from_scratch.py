r"""Pruning from scratch (Wang et al. 2020) for CIFAR-10 ResNet-56 at 50 % of the MACs: gates learned for 10 epochs on
the random init (each block's bn1 γ a gate, γ₀ = 0.5, the paper's budget loss (Σ|γ|/C − 0.5)²; Adam 1e-2 on the
gates: our choice, the paper's exact search hyper-parameters were not checked offline), then the pruned network
trained from scratch with SGD 0.1, momentum 0.9, wd 1e-4, 160 epochs, ÷10 at 50 % / 75 % (the standard CIFAR
schedule).

  command   python -m experiments.pruning_from_scratch --config=resnet56_from_scratch \
                --config.data_dir=/path/to/cifar10 \
                --workdir=runs/r56_pfs
  expected  not run here (no CIFAR-10 on this machine); compare with the paper's ResNet-56 row
  time      about 1 day on this 2-core x86 CPU (estimate: ~3× a ResNet-20 epoch at half the MACs, 170 epochs)
"""

from experiments.configs import dense_baseline


def get_config():
  """Dense ResNet-56, 160 epochs SGD 0.1 (÷10 at 50 %/75 %), 10-epoch gate search, 50 % MACs budget."""
  c = dense_baseline.get_config()
  c.model = "resnet56"
  c.num_epochs = 160
  c.optimizer.update(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                     milestones=(0.5, 0.75), decay_factor=0.1)
  c.from_scratch.update(search_epochs=10, gates="bn", init=0.5, penalty="budget", weight=1000.0, ratio=0.5,
                        learning_rate=1e-2, budget=0.5)
  return c
