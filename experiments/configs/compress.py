r"""Compress a finished Fashion-MNIST run with data-aware SVD (``experiments/compress.py``): ranks allocated to a MACs
budget on calibration statistics, then fine-tuned.

  command   python -m experiments.cifar_svd --config=fashion_mnist_dense --config.num_epochs=4 \
                --workdir=runs/fmnist_dense
            python -m experiments.compress --source=runs/fmnist_dense --workdir=runs/fmnist_whitened_2x
  expected  the dense ResNet-8 (90.8 % test accuracy after 4 epochs) at 2× fewer MACs keeps 77.3 % before fine-tuning
            with method=whitened (method=plain: 27.7 %), and 89.5 % after the one fine-tune epoch (plain: 88.6 %)
            (docs/compression.md)
  time      about 6 min on this 2-core x86 CPU (estimate: the dense source ~5 min, the compression and 1 epoch ~1–2 min)
"""

from experiments.configs import fashion_mnist


def get_config():
  """The Fashion-MNIST config (data, batch, model options) plus the compress fields; fine-tune: Adam 5e-4 cosine,
  orthogonality regularizer, no sparsity, no pruning."""
  c = fashion_mnist.get_config()
  c.source = ""  # the finished run to compress (--source=RUN)
  c.method = "whitened"  # plain | activation | whitened (a dense or SVD source) | energy (an SVD source)
  c.macs_reduction = 2.0  # the compressed model has <= dense MACs / macs_reduction
  c.energy = 0.01  # method=energy: each layer keeps all but this fraction of its Σ s²
  c.energy_rule = "smallest_k"  # method=energy: smallest_k | official_cifar | official_imagenet (final_prune's rule)
  c.calibration_examples = 1024  # training images for the input statistics
  c.alpha = 0.5  # method=activation: columns scaled by mean|x|^alpha
  c.norm_aware = False  # activation/whitened: weight each conv's output error by the BatchNorm after it
  c.finetune_epochs = 1  # 0: the compressed model as it is
  c.optimizer.update(learning_rate=5e-4)
  c.reg.update(orthogonality=1.0, sparsity=0.0)
  return c
