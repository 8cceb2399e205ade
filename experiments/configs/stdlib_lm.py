"""Byte-level language model on this Python's standard library (every machine has it): a 2-block decoder-only
transformer (d 128, 4 heads, context 128) written as flax users write it, svdify-ed (attention and MLP projections
in SVD form), orthogonality + Hoyer, online energy pruning, final prune and a fine-tune epoch.

  command   python -m experiments.lm_svd --config=stdlib_lm --workdir=runs/lm
  expected  test perplexity 11.99 (3.584 bits per byte) on 256 windows of the held-out stdlib files, with 2× fewer
            MACs per token (425,984 → 212,992) and 1.99× fewer params than dense (total rank 1536 → 413);
            docs/language_models.md
  time      about 5 min on this 2-core x86 CPU shared with another run (measured 2026-12-07: 65–115 s per epoch of 100
            steps; 24 min when the machine was oversubscribed four times over)
"""

import ml_collections

from experiments.configs import default


def get_config():
  """The stdlib's .py files, ByteLM d 128 × 2 blocks, 4 epochs of 100 steps (1 fine-tune), Adam 2e-3 cosine."""
  c = default.get_config()
  c.task = "language_model"
  c.model = "byte_lm"
  c.dataset = "text"
  # A folder of text files (None: this Python's standard library), the file-name endings read, the share of files
  # held out for test (split by file, fixed by seed), and the test windows evaluated (spread evenly; -1: all).
  c.text_dir = ml_collections.FieldReference(None, field_type=str)
  c.text_suffixes = (".py",)
  c.test_fraction = 0.1
  c.test_subset = 256
  # The model (experiments/models/byte_lm.py): width, heads, blocks, MLP width, context (bytes), tied embeddings.
  c.lm = ml_collections.ConfigDict({"d_model": 128, "heads": 4, "layers": 2, "d_ff": 512, "context": 128,
                                    "tied": True})
  c.augment = False
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 4
  c.max_steps_per_epoch = 100
  c.optimizer.update(optimizer="adam", learning_rate=2e-3, schedule="cosine")
  c.reg.update(orthogonality=0.1, sparsity=0.003, sparsity_type="hoyer")
  c.finetune_epochs = 1
  c.pruning.update(enabled=True, strategy="energy", energy=0.05, every=1, start=2)
  c.final_prune.update(strategy="budget", macs_reduction=2.0)
  return c
