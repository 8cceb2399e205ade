"""End to end, the frontier's extra methods: magnitude and dynamic masks at a parameter count (exact kept count, the
mask kept through fine-tuning and a resume), uniformly narrower widths and slimming to a MACs budget."""

import math
import os

import chex
import numpy as np
import pytest

from experiments.run import loop
from experiments.run.plan import make_plan
from jaxsvd import checkpoint
from jaxsvd.core.tree import leaves_by_path
from jaxsvd.linen import flops
from jaxsvd.models import build_model
from jaxsvd.pruning import masks as masks_lib
from tests import helpers

DENSE = {"svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False, "reg.orthogonality": 0.0,
         "reg.sparsity": 0.0}
DENSE_MACS = flops.count(build_model("resnet8", 10, None), (28, 28, 1)).macs


def _kernel_zeros(params) -> tuple[int, int]:
  kernels = [np.asarray(w) for p, w in leaves_by_path(params).items() if masks_lib.is_kernel(p, w)]
  return sum(int(np.sum(w == 0)) for w in kernels), sum(w.size for w in kernels)


@pytest.mark.parametrize("kind", ["magnitude", "dynamic"])
def test_masks_reach_the_exact_count_and_keep_the_mask_through_a_resume(tmp_path, kind):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  overrides = {**DENSE, "num_epochs": 3, "finetune_epochs": 1, "masks.enabled": True, "masks.kind": kind,
               "masks.param_reduction": 3.0}
  straight = loop.run(helpers.tiny_config(data_dir, **overrides), str(tmp_path / "a"))
  workdir = str(tmp_path / "b")
  stop = 2 if kind == "magnitude" else 1  # after the mask is fixed / while it is still dynamic
  assert loop.run(helpers.tiny_config(data_dir, **overrides), workdir, stop_after_epoch=stop) is None
  resumed = loop.run(helpers.tiny_config(data_dir, **overrides), workdir)
  assert resumed == straight

  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  params = restored.variables["params"]
  total = sum(int(np.size(w)) for w in leaves_by_path(params).values())
  zeros, kernels = _kernel_zeros(params)
  assert straight["params_total"] == total and straight["params_nonzero"] == round(total / 3.0)
  assert zeros == total - round(total / 3.0)  # exactly the pruned count, still zero after the fine-tune epoch
  assert sum(restored.architecture.masks.values()) == kernels - zeros
  assert straight["macs_after"] == straight["macs_before"] == DENSE_MACS  # unstructured: MACs unchanged
  events = [e for e in restored.meta["pruning_events"] if e["kind"] == "masks"]
  assert [e["epoch"] for e in events] == [2] and events[0]["method"] == kind


def test_narrow_widths_fit_the_macs_budget_with_one_common_factor(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  c = helpers.tiny_config(data_dir, **DENSE, **{"num_epochs": 1, "finetune_epochs": 0, "narrow.macs_reduction": 2.5,
                                                 "narrow.channel_multiple": 2})
  summary = loop.run(c, str(tmp_path / "run"))
  widths = checkpoint.restore(os.path.join(tmp_path, "run", "checkpoints")).architecture.widths
  full = {"stage1_block0/conv1": 16, "stage2_block0/conv1": 32, "stage3_block0/conv1": 64}
  macs = lambda w: flops.count(build_model("resnet8", 10, None, widths=w), (28, 28, 1)).macs  # noqa: E731
  assert summary["macs_before"] == DENSE_MACS and summary["macs_after"] == macs(widths) <= DENSE_MACS / 2.5
  # one factor f: every width is ⌈f·C⌉ rounded up to 2; the next wider uniform architecture breaks the budget
  factors = [f for f in np.linspace(0.0, 1.0, 2001)[1:]
             if {p: min(C, 2 * math.ceil(math.ceil(f * C) / 2)) for p, C in full.items()} == widths]
  assert factors
  wider = {p: min(C, 2 * math.ceil(math.ceil((factors[-1] + 5e-4) * C) / 2)) for p, C in full.items()}
  assert wider != widths and macs(wider) > DENSE_MACS / 2.5


def test_slimming_to_a_macs_budget(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  c = helpers.tiny_config(data_dir, **DENSE, **{"num_epochs": 2, "finetune_epochs": 0, "optimizer.bn_l1": 1e-3,
                                                 "slimming.enabled": True, "slimming.prune_epoch": 1,
                                                 "slimming.macs_reduction": 2.0})
  summary = loop.run(c, str(tmp_path / "run"))
  assert summary["macs_before"] == DENSE_MACS and summary["macs_after"] <= DENSE_MACS / 2.0
  assert summary["macs_after"] > DENSE_MACS / 2.0 * 0.8  # the widest architecture under the budget, not any
  widths = checkpoint.restore(os.path.join(tmp_path, "run", "checkpoints")).architecture.widths
  chex.assert_equal(set(widths), {"stage1_block0/conv1", "stage2_block0/conv1", "stage3_block0/conv1"})


@pytest.mark.parametrize("overrides,message", [
    ({"masks.enabled": True, "masks.kind": "random"}, "masks.kind"),
    ({"masks.enabled": True, "masks.param_reduction": 0.5}, "masks.param_reduction must be a number ≥ 1"),
    ({"masks.enabled": True, "masks.prune_every": 2}, "masks.prune_every=2"),
    ({"masks.enabled": True, "svd.enabled": True}, "set svd.enabled=False"),
    ({"masks.enabled": True, "masks.prune_epoch": 9}, r"masks.prune_epoch must be None or an int in \[1, "),
    ({"narrow.macs_reduction": 0.5}, "narrow.macs_reduction must be 0"),
    ({"narrow.macs_reduction": 2.0, "svd.enabled": True}, "narrow.macs_reduction narrows a dense model"),
    ({"narrow.channel_multiple": 0}, "narrow.channel_multiple"),
    ({"slimming.enabled": True, "slimming.prune_epoch": 2, "slimming.macs_reduction": -1.0},
     "slimming.macs_reduction must be 0"),
])
def test_bad_fields_are_one_line_errors_before_compile(tmp_path, overrides, message):
  c = helpers.tiny_config(str(tmp_path), **{**DENSE, **overrides})
  with pytest.raises(ValueError, match=message):
    make_plan(c)
