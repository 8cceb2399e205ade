r"""Network slimming, Liu et al. 2017 (CIFAR-10, VGG-19-BN): SGD 0.1, momentum 0.9, wd 1e-4, λ = 1e-4 on BN γ
for 160 epochs, prune 70 % of the channels, fine-tune 160 epochs; LR ÷10 at 50 % and 75 % of each phase.

One run of 320 epochs: slimming re-creates the optimizer, so its schedule (counted in its own steps) starts
again at 0.1; milestones at 25 % / 37.5 % of the whole run are 50 % / 75 % of each 160-epoch phase.

  command   python -m experiments.cifar_svd --config=vgg19_slimming --config.data_dir=/path/to/cifar10 \
                --workdir=runs/vgg19_slim
  expected  not run here (no CIFAR-10 on this machine); the paper reports 93.66 % dense and 93.80 % after pruning 70 %
  time      about 4 days on this 2-core x86 CPU (estimate: ~17 min per VGG-19 epoch, from the ResNet-18 step rate)
"""

from experiments.configs import dense_baseline


def get_config():
  """Dense VGG-19, 320 epochs, batch 64, SGD 0.1, BN-γ L1 1e-4, 70 % of the BN channels slimmed after epoch 160."""
  c = dense_baseline.get_config()
  c.model = "vgg19"
  c.num_epochs = 320
  c.batch_size = 64
  c.optimizer.update(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                     milestones=(0.25, 0.375), decay_factor=0.1, bn_l1=1e-4)
  c.slimming.update(enabled=True, amount=0.7, prune_epoch=160)
  return c
