"""Pruning from scratch (Wang et al. 2020) on the quick Fashion-MNIST setup: ResNet-8 (dense), 1 epoch of gate search
on the random init (BN γ as gates, γ₀ = 0.5, budget loss), block widths for 50 % of the MACs, then 6 epochs of
training from scratch.

  command   python -m experiments.pruning_from_scratch --config=fashion_mnist_from_scratch --workdir=runs/pfs
  expected  90.27 % test accuracy at 2.02× fewer MACs, 1.80× fewer params (inner widths 16/32/64 → 9/8/40)
            (docs/results.md)
  time      about 7–8 min on this 2-core x86 CPU (measured)
"""

from experiments.configs import fashion_mnist_dense


def get_config():
  """The dense Fashion-MNIST config with a 1-epoch gate search and a 50 % MACs budget."""
  c = fashion_mnist_dense.get_config()
  c.from_scratch.update(search_epochs=1, gates="bn", init=0.5, penalty="budget", weight=100.0, ratio=0.5,
                        learning_rate=1e-2, budget=0.5)
  return c
