"""End to end, the other pruning methods as experiment events: network slimming and pruning from scratch."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from experiments import pruning_from_scratch, train
from experiments.plan import make_plan
from jaxsvd import checkpoint, flops
from jaxsvd.models import build_model
from jaxsvd.tree import get_node
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_slimming_experiment_prunes_keeps_zeros_and_resumes(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  overrides = {"svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False,
               "reg.orthogonality": 0.0, "reg.sparsity": 0.0, "optimizer.bn_l1": 1e-3,
               "slimming.enabled": True, "slimming.amount": 0.3, "slimming.prune_epoch": 2}
  straight = train.run(helpers.tiny_config(data_dir, **overrides), str(tmp_path / "a"))
  workdir = str(tmp_path / "b")
  assert train.run(helpers.tiny_config(data_dir, **overrides), workdir, stop_after_epoch=3) is None
  resumed = train.run(helpers.tiny_config(data_dir, **overrides), workdir)
  total = straight["bn_channels_before"]
  assert straight["bn_channels_after"] == resumed["bn_channels_after"] == total - round(0.3 * total)
  assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=1e-6)

  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  channels = restored.architecture.pruned_channels
  assert sum(len(v) for v in channels.values()) == round(0.3 * total)
  params = restored.variables["params"]
  for path, pruned in channels.items():  # two fine-tune epochs later the pruned γ, β are still exactly zero
    node = get_node(params, path)
    assert (np.asarray(node["scale"])[pruned] == 0).all() and (np.asarray(node["bias"])[pruned] == 0).all()
  events = [e for e in restored.meta["pruning_events"] if e["kind"] == "slimming"]
  assert len(events) == 1 and events[0]["epoch"] == 2


def test_bad_slimming_config_is_an_error_before_compile(tmp_path):
  c = helpers.tiny_config(str(tmp_path), **{"slimming.enabled": True, "slimming.prune_epoch": 4})
  with pytest.raises(ValueError, match=r"slimming.prune_epoch must be an int in \[1, num_epochs=4\)"):
    make_plan(c)


def test_experiment_search_then_train_from_scratch_and_restore(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  c = helpers.tiny_config(data_dir, **{"svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False,
                                       "reg.orthogonality": 0.0, "reg.sparsity": 0.0, "num_epochs": 2,
                                       "from_scratch.search_epochs": 1, "from_scratch.budget": 0.6})
  workdir = str(tmp_path / "run")
  summary = pruning_from_scratch.run(c, workdir)
  record = json.load(open(os.path.join(workdir, "widths.json")))
  assert record["macs_pruned"] <= 0.6 * record["macs_full"] and summary["macs_after"] == record["macs_pruned"]
  dense = flops.count(build_model("resnet8", 10, None), (28, 28, 1)).macs
  assert record["macs_full"] == dense
  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))  # the widths come from the metadata
  assert restored.architecture.inner_widths == record["inner_widths"]
  for block, width in record["inner_widths"].items():
    chex.assert_shape(restored.variables["params"][block]["bn1"]["scale"], (width,))


def test_cli_bad_config_is_one_line_error_before_search(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.pruning_from_scratch", f"--workdir={tmp_path}",
                         "--config=experiments/configs/fashion_mnist_from_scratch.py",
                         "--config.from_scratch.budget=1.5"], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode != 0 and "from_scratch.budget must be in (0.0, 1.0], got 1.5" in proc.stderr
  assert not os.path.exists(tmp_path / "widths.json")
