"""End to end, the other pruning methods as experiment events: network slimming and pruning from scratch."""

import json
import os
import subprocess
import sys

import chex
import numpy as np
import pytest

from experiments import pruning_from_scratch
from experiments.run import loop
from experiments.run.plan import make_plan
from jaxsvd import checkpoint
from jaxsvd.linen import flops
from jaxsvd.models import build_model
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_slimming_rebuilds_a_narrower_model_and_resumes_exactly(tmp_path):
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  overrides = {"svd.enabled": False, "pruning.enabled": False, "final_prune.enabled": False,
               "reg.orthogonality": 0.0, "reg.sparsity": 0.0, "optimizer.bn_l1": 1e-3,
               "slimming.enabled": True, "slimming.amount": 0.3, "slimming.prune_epoch": 2}
  straight = loop.run(helpers.tiny_config(data_dir, **overrides), str(tmp_path / "a"))
  workdir = str(tmp_path / "b")
  assert loop.run(helpers.tiny_config(data_dir, **overrides), workdir, stop_after_epoch=3) is None
  resumed = loop.run(helpers.tiny_config(data_dir, **overrides), workdir)
  prunable = 16 + 32 + 64  # ResNet-8's three blocks' inner channels (the residual stream is not pruned)
  removed = round(0.3 * prunable)
  assert straight["bn_channels_before"] - straight["bn_channels_after"] == removed
  assert resumed == straight  # a kill after the rebuild resumes to the same result
  assert straight["macs_after"] < straight["macs_before"] and straight["params_after"] < straight["params_before"]

  restored = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  widths = restored.architecture.widths
  assert sum(widths.values()) == prunable - removed
  assert sum(len(v) for v in restored.architecture.pruned_channels.values()) == removed
  for conv, width in widths.items():  # physically narrower: conv1 outputs, bn1, conv2 inputs
    block = restored.variables["params"][conv.split("/")[0]]
    conv1, conv2 = block["conv1"]["kernel"], block["conv2"]["kernel"]
    chex.assert_shape([conv1, block["bn1"]["scale"], conv2],
                      [(*conv1.shape[:3], width), (width,), (3, 3, width, conv2.shape[3])])
  events = [e for e in restored.meta["pruning_events"] if e["kind"] == "slimming"]
  assert len(events) == 1 and events[0]["epoch"] == 2
  _restores_in_a_fresh_process(os.path.join(workdir, "checkpoints"), restored, tmp_path)


@pytest.mark.slow  # each method alone stays in the default run (above; the SVD runs in experiment_test)
def test_svd_and_slimming_together_restore_in_a_fresh_process(tmp_path):
  """One model both low-rank and narrow: the slimmed SVD checkpoint restores from its directory alone."""
  data_dir = helpers.write_fashion_mnist(str(tmp_path / "fm"))
  overrides = {"pruning.enabled": False, "final_prune.enabled": False, "optimizer.bn_l1": 1e-3, "num_epochs": 3,
               "slimming.enabled": True, "slimming.amount": 0.5, "slimming.prune_epoch": 2}
  summary = loop.run(helpers.tiny_config(data_dir, **overrides), str(tmp_path / "run"))
  ckpt = os.path.join(tmp_path, "run", "checkpoints")
  restored = checkpoint.restore(ckpt)
  assert restored.architecture.svd is not None and sum(restored.architecture.widths.values()) == 56
  assert summary["macs_after"] < summary["macs_before"]
  _restores_in_a_fresh_process(ckpt, restored, tmp_path)


def _restores_in_a_fresh_process(ckpt, restored, tmp_path):
  """The checkpoint's model, restored from the directory alone in a new process, gives this process's outputs."""
  x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
  x_file, y_file = str(tmp_path / "x.npy"), str(tmp_path / "y.npy")
  np.save(x_file, x)
  code = (f"import numpy as np; from jaxsvd import checkpoint; r = checkpoint.restore({ckpt!r}); "
          f"np.save({y_file!r}, np.asarray(r.model.apply(r.variables, np.load({x_file!r}))))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  expected = restored.model.apply(restored.variables, x)
  np.testing.assert_allclose(np.load(y_file), np.asarray(expected), rtol=1e-5, atol=1e-5)


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
  assert restored.architecture.widths == record["widths"]
  for conv, width in record["widths"].items():
    chex.assert_shape(restored.variables["params"][conv.split("/")[0]]["bn1"]["scale"], (width,))


def test_cli_bad_config_is_one_line_error_before_search(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.pruning_from_scratch", f"--workdir={tmp_path}",
                         "--config=experiments/configs/fashion_mnist_from_scratch.py",
                         "--config.from_scratch.budget=1.5"], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode != 0 and "from_scratch.budget must be in (0.0, 1.0], got 1.5" in proc.stderr
  assert not os.path.exists(tmp_path / "widths.json")
