"""Compress a finished byte-level language-model run (``stdlib_lm``) with data-aware SVD (``experiments/compress.py``):
ranks allocated to a MACs budget on calibration statistics of its training text, then one fine-tune epoch.

  command   python -m experiments.lm_svd --config=stdlib_lm --config.svd.enabled=False --workdir=runs/lm_dense
            python -m experiments.compress --config=stdlib_lm_compress --source=runs/lm_dense --workdir=runs/lm_2x
  expected  not yet measured at this size (the dense source's run was cut short on 2026-12-07: its first epoch alone
            reached test perplexity 11.71, 3.550 bits per byte); at toy size (tests/experiments/language_model_test.py,
            d 32, 1.3× fewer MACs) the compressed model meets the budget and fine-tunes; docs/language_models.md
  time      not measured on this 2-core x86 CPU (oversubscribed four times over on 2026-12-07): the dense source is a
            stdlib_lm run (about 5 min unloaded), then the statistics, the decomposition and one 100-step epoch
"""

from experiments.configs import stdlib_lm


def get_config():
  """The stdlib_lm config (text, model sizes, batch) plus the compress fields; fine-tune: Adam 5e-4 cosine,
  orthogonality regularizer, no sparsity, no pruning."""
  c = stdlib_lm.get_config()
  c.source = ""  # the finished language-model run to compress (--source=RUN)
  c.method = "whitened"  # plain | activation | whitened (a dense or SVD source) | energy (an SVD source)
  c.macs_reduction = 2.0  # the compressed model has <= dense MACs / macs_reduction (per token)
  c.energy = 0.01  # method=energy: each layer keeps all but this fraction of its Σ s²
  c.energy_rule = "smallest_k"  # method=energy: smallest_k | official_cifar | official_imagenet
  c.calibration_examples = 256  # training windows for the input statistics
  c.alpha = 0.5  # method=activation: columns scaled by mean|x|^alpha
  c.norm_aware = False  # no BatchNorm in a transformer
  c.finetune_epochs = 1  # 0: the compressed model as it is
  c.optimizer.update(learning_rate=5e-4)
  c.reg.update(orthogonality=0.1, sparsity=0.0)
  return c
