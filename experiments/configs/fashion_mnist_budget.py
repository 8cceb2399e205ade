"""Budget-targeted online SVD pruning on the quick Fashion-MNIST setup: the SVD run of ``fashion_mnist.py`` with its
online energy pruning replaced by 'budget' pruning to 3× fewer MACs than the dense model, reached gradually over
the online events after epochs 2, 3 and 4 (``budget_ramp='cubic'``: 1.88×, 2.79×, 3.0×), then 2 fine-tune epochs.

  python -m experiments.cifar_svd --config=experiments/configs/fashion_mnist_budget.py --workdir=runs/fm_budget
  (add --config.pruning.budget_ramp=none to jump to 3× at the first event)

Expected (session 8, this 2-core CPU): see docs/results.md (the two budget rows).
"""

from experiments.configs import fashion_mnist


def get_config():
  """``fashion_mnist.py`` with online 'budget' pruning to 3× fewer MACs (cubic ramp) and no final energy prune."""
  c = fashion_mnist.get_config()
  c.pruning.update(strategy="budget", macs_reduction=3.0, budget_ramp="cubic")
  c.final_prune.enabled = False
  return c
