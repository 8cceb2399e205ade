"""Pruning from scratch (Wang et al. 2020) setting for CIFAR-10 ResNet-56 at 50 % of the MACs: gates learned for
10 epochs on the random init (each block's bn1 γ a gate, γ₀ = 0.5, budget loss (Σ|γ|/C − 0.5)² as in the seed;
Adam 1e-2 on the gates: our choice, the paper's exact search hyper-parameters were not checked offline), then
the pruned network trained from scratch with SGD 0.1, momentum 0.9, wd 1e-4, 160 epochs, ÷10 at 50 % / 75 %
(the standard CIFAR schedule)."""

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
