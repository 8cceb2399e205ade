"""Pruning from scratch (Wang et al. 2020), the seed's setting: CIFAR-10 VGG-19-BN with random, frozen weights;
every BN γ is a gate (γ₀ = 0.5) trained for 10 epochs with the budget loss (Σ|γ|/C − 0.5)²; one global gate
threshold is bisected to 50 % of the MACs; that architecture is trained from scratch (SGD 0.1, momentum 0.9,
wd 1e-4, 160 epochs, ÷10 at 50 % / 75 %).

  python -m experiments.pruning_from_scratch --config=experiments/configs/vgg19_from_scratch.py \\
      --workdir=runs/vgg19_pfs --config.data_dir=/path/to/cifar
"""

from experiments.configs import dense_baseline


def get_config():
  """Dense VGG-19, BN-γ gates with the budget loss, 50 % MACs budget, 160 epochs SGD 0.1 from scratch."""
  c = dense_baseline.get_config()
  c.model = "vgg19"
  c.num_epochs = 160
  c.optimizer.update(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                     milestones=(0.5, 0.75), decay_factor=0.1)
  c.from_scratch.update(search_epochs=10, gates="bn", init=0.5, penalty="budget", weight=5000.0, ratio=0.5,
                        learning_rate=1e-2, budget=0.5)
  return c
