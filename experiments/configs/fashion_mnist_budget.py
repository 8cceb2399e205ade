"""Budget-targeted online SVD pruning on the quick Fashion-MNIST setup: the SVD run of ``fashion_mnist.py`` with its
online energy pruning replaced by 'budget' pruning to 3× fewer MACs than the dense model, reached gradually over
the online events after epochs 2, 3 and 4 (``budget_ramp='cubic'``: 1.88×, 2.79×, 3.0×), then 2 fine-tune epochs.

  command   python -m experiments.cifar_svd --config=fashion_mnist_budget --workdir=runs/fm_budget
            (add --config.pruning.budget_ramp=none to jump to 3× at the first event)
  expected  91.04 % test accuracy at 3.02× fewer MACs (budget_ramp=none: 90.58 % at 3.01×) (docs/results.md)
  time      about 13 min on this 2-core x86 CPU (measured on a shared machine)
"""

from experiments.configs import fashion_mnist


def get_config():
  """``fashion_mnist.py`` with online 'budget' pruning to 3× fewer MACs (cubic ramp) and no final energy prune."""
  c = fashion_mnist.get_config()
  c.pruning.update(strategy="budget", macs_reduction=3.0, budget_ramp="cubic")
  c.final_prune.enabled = False
  return c
