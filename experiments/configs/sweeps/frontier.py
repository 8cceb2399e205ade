"""The accuracy–compression frontier on Fashion-MNIST ResNet-8: every method at 2× and 4× fewer MACs, 2 seeds, the
same E = 4 epochs for every method (46 runs).

  command   python -m experiments.sweep --config=frontier --workdir=runs/frontier --workers=2
  expected  the table and both figures of docs/results.md#the-accuracycompression-frontier (dense 77.97 %, SVD
            training 74.65–75.20 % at 2×, plain truncated SVD 69.47 %)
  time      about 40 min on this 2-core x86 CPU with 2 workers (measured)

Sizes: train_subset=4000, test_subset=2000, E = 4 epochs (the last one fine-tunes, F = 1). Measured on this
2-core CPU (shared): an SVD budget point at 4000 train images × 4 epochs took 63 s end to end (≈ 8 s per epoch
after the first, 20 s start-up and compiles), a dense one ~40 s of CPU; export + autotune ≈ 10 s per point. At
3000 images: ≈ 45 s per point × 46 + ≈ 8 min of exports and latency ≈ 42 min in one process.

Methods (λs from the paper's ResNet-20 channel-wise commands, docs/paper.md):
  dense          the reference (fashion_mnist_dense), E epochs
  narrow         dense, uniformly narrower widths for the budget, trained from scratch (narrow.macs_reduction = b)
  dense_pre      the dense model trained E − F epochs: the source of the two below
  svd_plain      truncated SVD of dense_pre to the budget + F fine-tune epochs (compress method=plain)
  svd_whitened   the same with data-aware (whitened) decomposition (compress method=whitened)
  svd_hoyer / svd_hoyer_square / svd_l1   SVD training, λo = 1, λs = 0.07 / 0.01 / 0.3, ramped budget pruning
                 (cubic) after epochs 1–3 to b× fewer MACs, F fine-tune epochs
  svd_noreg      the same SVD form and pruning with λo = λs = 0
  slimming       network slimming to the budget (slimming.macs_reduction = b), widths ×8, after epoch E − F; 2× only:
                 ResNet-8's slimmable channels are the blocks' inner ones (the residual stream stays), and 8 per
                 block is more than 4× fewer MACs allows ("even one channel per group needs more MACs")
  slimming_x1    the same at 4× with widths ×1
  from_scratch   pruning from scratch, from_scratch.budget = 1/b (1 gate-search epoch on frozen weights, then E)
  magnitude      unstructured magnitude masks at b× fewer params (MACs unchanged: what structure costs)
  dynamic        dynamic pruning (masks recomputed at every forward pass), b = 2 only

The sweep writes results.md, the per-run CSV and both figures under its workdir.
"""

from experiments.configs.sweeps import method, sweep

E, F = 4, 1
SVD_BUDGET = ("pruning.start=1", "pruning.every=1", f"pruning.stop={E - F}", "pruning.budget_ramp=cubic",
              f"finetune_epochs={F}")


def _svd(sparsity_type: str, sparsity: float, orthogonality: float = 1.0):
  return method("fashion_mnist_budget", overrides=(
      *SVD_BUDGET, f"reg.sparsity_type={sparsity_type}", f"reg.sparsity={sparsity}",
      f"reg.orthogonality={orthogonality}"), budget="pruning.macs_reduction")


def get_config():
  """The frontier sweep (module doc)."""
  common = ("data_dir=/usr/share/datasets/fashion-mnist", "train_subset=4000", "test_subset=2000",
            f"num_epochs={E}", "progress_bar=False", "tensorboard=False", "plots=False")
  methods = {
      "dense": method("fashion_mnist_dense", overrides=("finetune_epochs=0",)),
      "narrow": method("fashion_mnist_dense", overrides=("finetune_epochs=0", "narrow.channel_multiple=1"),
                       budget="narrow.macs_reduction"),
      "dense_pre": method("fashion_mnist_dense", overrides=(f"num_epochs={E - F}", "finetune_epochs=0")),
      "svd_plain": method("compress", "compress", ("method=plain", f"finetune_epochs={F}"), budget="macs_reduction",
                          source="dense_pre"),
      "svd_whitened": method("compress", "compress", ("method=whitened", f"finetune_epochs={F}"),
                             budget="macs_reduction", source="dense_pre"),
      "svd_hoyer": _svd("hoyer", 0.07),
      "svd_hoyer_square": _svd("hoyer_square", 0.01),
      "svd_l1": _svd("l1", 0.3),
      "svd_noreg": _svd("hoyer", 0.0, orthogonality=0.0),
      "slimming": method("fashion_mnist_slimming", overrides=(
          f"slimming.prune_epoch={E - F}", "slimming.channel_multiple=8", f"finetune_epochs={F}"),
          budget="slimming.macs_reduction", budgets=(2.0,)),
      "slimming_x1": method("fashion_mnist_slimming", overrides=(
          f"slimming.prune_epoch={E - F}", "slimming.channel_multiple=1", f"finetune_epochs={F}"),
          budget="slimming.macs_reduction", budgets=(4.0,)),
      "from_scratch": method("fashion_mnist_from_scratch", "from_scratch", ("from_scratch.search_epochs=1",
                                                                            "finetune_epochs=0"),
                             budget="from_scratch.budget", budget_as="1/b"),
      "magnitude": method("fashion_mnist_dense", overrides=("masks.enabled=True", "masks.kind=magnitude",
                                                            f"finetune_epochs={F}"), budget="masks.param_reduction"),
      "dynamic": method("fashion_mnist_dense", overrides=("masks.enabled=True", "masks.kind=dynamic",
                                                          f"finetune_epochs={F}"),
                        budget="masks.param_reduction", budgets=(2.0,)),
  }
  return sweep(methods, budgets=(2.0, 4.0), seeds=(0, 1), common=common, reference="dense")
