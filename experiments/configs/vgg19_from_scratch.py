r"""Pruning from scratch (Wang et al. 2020), the paper's CIFAR-10 VGG-19-BN setting: random, frozen weights; every BN γ
is a gate (γ₀ = 0.5) trained for 10 epochs with the budget loss (Σ|γ|/C − 0.5)²; one global gate threshold is
bisected to 50 % of the MACs; that architecture is trained from scratch (SGD 0.1, momentum 0.9, wd 1e-4, 160
epochs, ÷10 at 50 % / 75 %).

  command   python -m experiments.pruning_from_scratch --config=vgg19_from_scratch --config.data_dir=/path/to/cifar10 \
                --workdir=runs/vgg19_pfs
  expected  not run here (no CIFAR-10 on this machine); compare with the paper's VGG-19 row
  time      about 2 days on this 2-core x86 CPU (estimate: ~17 min per VGG-19 epoch, from the ResNet-18 step rate)
"""

from experiments.configs import resnet56_from_scratch


def get_config():
  """``resnet56_from_scratch.py`` (BN-γ gates, budget loss, 50 % MACs, 160 epochs SGD 0.1) on VGG-19, λ = 5000."""
  c = resnet56_from_scratch.get_config()
  c.model = "vgg19"
  c.from_scratch.weight = 5000.0  # λ of the order of the gated channels C (5504 for VGG-19)
  return c
