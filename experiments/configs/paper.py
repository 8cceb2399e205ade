r"""The authors' recipes (official code, ``CNN/cifar10/Start up code.md`` and ``CNN/imagenet/start_up.txt``) as ONE
table; every config is generated from it.

  --config=paper:resnet56,channel,hoyer               the recipe (experiments.paper_recipe)
  --config=paper:resnet56,channel,hoyer,regularize    one stage (experiments.cifar_svd)
  --config=paper:resnet50,channel,hoyer               ImageNet ResNet-50

  command   python -m experiments.paper_recipe --config=paper:resnet20,channel,hoyer --config.data_dir=/path/to/cifar10 \
                --workdir=runs/r20_recipe
  expected  not run here (no CIFAR-10 or ImageNet on this machine); compare with Yang et al. 2020's tables
            (docs/paper.md); the same recipe at Fashion-MNIST size is fashion_mnist_recipe
  time      about 1 day per ResNet-20 recipe on this 2-core x86 CPU (estimate: 3 × 164 epochs at ~270 img/s)

Shared CIFAR-10 setting: Adam 1e-3 on all params, no weight decay, batch 100, 164 epochs per stage, lr × 0.1 at
epochs 81 and 122, λo = 1, fixed CIFAR mean/std, crop + flip, every conv in SVD form incl. the stem and the stride-2
and shortcut convs (``--n_svd_s1``), option-B shortcuts, Bottleneck blocks (without the ReLU after bn2) for depth
≥ 44, the classifier dense, the official forward (σ → |σ|) and init (kaiming-normal factors, σ ~ N(0, 1)),
the official CIFAR energy rule (ties kept). The base config's ``reg.sparsity`` is stage 2's λs and ``final_prune``
stage 3's rule (``stage_config``).

λs: the authors' notes are a lab log; the directory a pruned model was loaded from encodes the λs of the run that
was finally used (``01`` = 0.1, ``0007`` = 0.007), and sometimes differs from the listed stage-2 command. The table
keeps both: ``lam_cmd`` (stage-2 command) and ``lam`` (from the fine-tune stage's load directory, else the prune
stage's, else the command). ``lam`` is used.
"""

from __future__ import annotations

import os

import ml_collections

from experiments.configs import default

# The official four-stage recipe as configs (Yang et al. 2020's code runs every stage as a separate job;
# ``experiments.paper_recipe`` runs them in one command, ``stage_config`` writes each one's config):
#   pretrain    λs = 0, no pruning                               → ROOT/pretrain
#   regularize  init_from=ROOT/pretrain, λs = reg.sparsity        → ROOT/regularize
#   prune       init_from=ROOT/regularize, ``final_prune``'s rule → ROOT/prune (no training)
#   finetune    init_from=ROOT/prune, λs = 0, no pruning          → ROOT/finetune
# Each training stage starts with a fresh optimizer at epoch 0 and runs ``num_epochs`` (the official: 164 each).
STAGES = ("pretrain", "regularize", "prune", "finetune")
SOURCE = {"regularize": "pretrain", "prune": "regularize", "finetune": "prune"}

# (depth, decomposition, sparsity) -> (λs of the stage-2 command, λs of the pruned run, prune rule):
# rule ('energy', e) uses the official CIFAR energy rule, ('threshold', t) the absolute threshold (`--sensitivity`).
CIFAR10 = {
    (20, "channel", "hoyer"): (0.07, 0.1, ("energy", 3e-6)),
    (20, "channel", "hoyer_square"): (1e-2, 0.007, ("energy", 5e-6)),
    (20, "channel", "l1"): (0.3, 0.3, ("energy", 1e-1)),
    (20, "spatial", "hoyer"): (0.1, 0.01, ("energy", 1e-1)),
    (20, "spatial", "hoyer_square"): (1e-2, 1e-2, ("threshold", 0.1)),
    (20, "spatial", "l1"): (0.3, 0.3, ("energy", 1e-1)),
    (32, "channel", "hoyer"): (0.03, 0.01, ("energy", 5e-3)),  # prune dir 0003, fine-tune dir 001
    (32, "channel", "hoyer_square"): (0.007, 0.001, ("energy", 1e-3)),
    (32, "channel", "l1"): (0.1, 0.03, ("energy", 5e-2)),  # prune dir 03, fine-tune dir 003
    (32, "spatial", "hoyer"): (0.005, 0.001, ("energy", 5e-4)),
    (32, "spatial", "hoyer_square"): (3e-4, 3e-4, ("energy", 5e-3)),
    (32, "spatial", "l1"): (0.1, 0.1, ("energy", 1e-2)),
    (56, "channel", "hoyer"): (0.001, 0.001, ("energy", 5e-3)),
    (56, "channel", "hoyer_square"): (1e-4, 1e-4, ("energy", 7e-3)),
    (56, "channel", "l1"): (0.3, 0.1, ("energy", 1e-1)),
    (56, "spatial", "hoyer"): (0.003, 0.003, ("energy", 1e-1)),  # prune dir 0001, fine-tune dir 0003
    (56, "spatial", "hoyer_square"): (1e-4, 1e-4, ("energy", 1e-1)),
    (56, "spatial", "l1"): (0.1, 0.03, ("energy", 1e-1)),
    (110, "channel", "hoyer"): (0.001, 0.001, ("energy", 1e-2)),
    (110, "channel", "hoyer_square"): (3e-4, 3e-4, ("energy", 1e-3)),
    (110, "channel", "l1"): (0.1, 0.03, ("energy", 3e-1)),
    (110, "spatial", "hoyer"): (0.01, 0.001, ("energy", 1e-3)),
    (110, "spatial", "hoyer_square"): (3e-4, 3e-4, ("energy", 1e-3)),
    (110, "spatial", "l1"): (0.3, 0.03, ("energy", 5e-2)),
}
# ImageNet ResNet-50: only Hoyer is listed (λs 0.003, e 1e-3); both decompositions.
IMAGENET = {(50, d, "hoyer"): (0.003, 0.003, ("energy", 1e-3)) for d in ("channel", "spatial")}
SPARSITY_NAMES = {"hoyer": "hoyer", "hoyer_square": "hoyer_square", "hoyer-square": "hoyer_square", "l1": "l1"}


def _official_svd(c) -> None:
  c.svd.update(sigma="abs", init="official", dense_first=False, dense_last=True, dense_strided=False)


def cifar10_config(depth: int, decomposition: str, sparsity: str):
  """The base config of one CIFAR-10 row (see the module doc)."""
  _, lam, (rule, value) = CIFAR10[(depth, decomposition, sparsity)]
  c = default.get_config()
  c.model, c.dataset, c.batch_size, c.num_epochs, c.normalization = f"resnet{depth}", "cifar10", 100, 164, "fixed"
  c.model_options = {"shortcut": "B", "block": "bottleneck" if depth >= 44 else "basic"}
  c.svd.decomposition = decomposition
  _official_svd(c)
  c.optimizer.update(optimizer="adam", learning_rate=1e-3, weight_decay=0.0, schedule="multistep",
                     milestone_epochs=(81, 122), decay_factor=0.1)
  c.reg.update(orthogonality=1.0, sparsity=lam, sparsity_type=sparsity)
  c.final_prune.update(enabled=True, strategy=rule, energy_rule="official_cifar", min_rank=1)
  c.final_prune.energy = value if rule == "energy" else 0.01
  c.final_prune.update(threshold=value if rule == "threshold" else 1e-3, threshold_mode="absolute")
  return c


def imagenet_config(decomposition: str):
  """The ImageNet ResNet-50 recipe: SGD 0.1 / 0.9, weight decay 1e-4 on every param (U, s, V too), batch 256,
  90 epochs, lr × 0.1 at epochs 31 and 61, λo = 2, Hoyer λs = 0.003, prune e = 1e-3 by the ImageNet energy rule.
  Data: streamed (``experiments/tasks/image_classification.py``): tfds 'imagenet2012' (``--config.data_source=tfds``), or by default an
  ImageFolder tree ``data_dir/{train,val}/<class>/*.JPEG``; random-resized-crop 224 + flip, eval 256 → center 224."""
  c = default.get_config()
  c.model, c.batch_size, c.num_epochs, c.eval_batch_size = "resnet50", 256, 90, 250
  c.dataset = "imagenet2012"
  c.svd.decomposition = decomposition
  _official_svd(c)
  c.optimizer.update(optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep",
                     milestone_epochs=(31, 61), decay_factor=0.1)
  c.reg.update(orthogonality=2.0, sparsity=0.003, sparsity_type="hoyer")
  c.final_prune.update(enabled=True, strategy="energy", energy=1e-3, energy_rule="official_imagenet", min_rank=1)
  return c


def get_config(arg: str = "resnet20,channel,hoyer"):
  """The config named by ``arg`` = 'resnet<depth>,<channel|spatial>,<hoyer|hoyer_square|l1>[,<stage>]'.

  Without a stage: the recipe's base config (``experiments.paper_recipe``); with one of ``STAGES``: that
  stage's config (``init_from`` still to be set with ``--config.init_from``).
  """
  parts = [p.strip().lower() for p in arg.split(",")]
  if len(parts) not in (3, 4) or not parts[0].startswith("resnet") or parts[2] not in SPARSITY_NAMES:
    raise ValueError(f"paper config {arg!r}: expected 'resnet<depth>,<channel|spatial>,<hoyer|hoyer_square|l1>"
                     f"[,<{'|'.join(STAGES)}>]'")
  depth, decomposition, sparsity = int(parts[0][6:]), parts[1], SPARSITY_NAMES[parts[2]]
  if (depth, decomposition, sparsity) in IMAGENET:
    c = imagenet_config(decomposition)
  elif (depth, decomposition, sparsity) in CIFAR10:
    c = cifar10_config(depth, decomposition, sparsity)
  else:
    raise ValueError(f"paper config {arg!r}: no such row; CIFAR-10 rows are resnet20/32/56/110 × channel/spatial × "
                     f"hoyer/hoyer_square/l1, ImageNet resnet50 × channel/spatial × hoyer")
  return stage_config(c, parts[3]) if len(parts) == 4 else c


def stage_config(c: ml_collections.ConfigDict, stage: str, root: str | None = None) -> ml_collections.ConfigDict:
  """The config of one stage of the recipe whose base config is ``c`` (``reg.sparsity`` is stage 2's λs and
  ``final_prune`` is stage 3's rule).

  Args:
    c: the recipe's base config.
    stage: one of ``STAGES``.
    root: the recipe's directory; ``init_from`` becomes ``root/<previous stage>`` (None: left as in ``c``).

  Returns:
    A new config: every stage turns online pruning off; pretrain and finetune set λs = 0; only prune keeps
    ``final_prune`` enabled.

  Raises:
    ValueError: if ``stage`` is unknown.
  """
  if stage not in STAGES:
    raise ValueError(f"stage={stage!r} is not one of {STAGES}")
  c = c.copy_and_resolve_references()
  with c.unlocked():
    c.pruning.enabled = False
    c.finetune_epochs = 0
    c.final_prune.enabled = stage == "prune"
    if stage in ("pretrain", "finetune"):
      c.reg.sparsity = 0.0
    if root is not None:
      c.init_from = os.path.join(root, SOURCE[stage]) if stage in SOURCE else None
  return c
