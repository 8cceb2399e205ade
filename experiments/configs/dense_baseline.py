r"""Dense baseline of the CIFAR-10 ResNet-20 runs: the same model, init and training code with svd off.

  command   python -m experiments.cifar_svd --config=dense_baseline --config.data_dir=/path/to/cifar10 \
                --workdir=runs/r20_dense
  expected  not run here (no CIFAR-10 on this machine); He et al. 2016 report 91.25 % for a plain ResNet-20
  time      about 9 h on this 2-core x86 CPU (estimate: 164 epochs at the measured ~270 img/s of a ResNet-20 train step)
"""

from experiments.configs import default


def get_config():
  """The defaults (CIFAR-10 ResNet-20, 164 epochs) with SVD and the final prune off."""
  c = default.get_config()
  c.svd.enabled = False
  c.final_prune.enabled = False
  c.num_epochs = 164
  return c
