"""The experiment loop on a streamed dataset (imagenet2012 as an ImageFolder tree of JPEGs): the stream's position
is saved with each checkpoint and a resumed run continues the stream where it stopped."""

import os
import signal

import chex
import numpy as np
import pytest
from PIL import Image

from experiments.run import epoch, loop, preemption
from jaxsvd import checkpoint, data
from tests import helpers


def _write_split(root, per_class, seed):
  rng = np.random.default_rng(seed)
  for label in range(2):
    os.makedirs(os.path.join(root, f"n{label:08d}"))
    for i in range(per_class):
      pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(os.path.join(root, f"n{label:08d}", f"{i}.jpg"))


def _config(data_dir):
  c = helpers.tiny_config(data_dir, **{"pruning.enabled": False, "final_prune.enabled": False, "finetune_epochs": 0})
  c.update(dataset="imagenet2012", data_source="local", model="resnet8", batch_size=4, eval_batch_size=6,
           max_steps_per_epoch=2, num_epochs=2)
  c.input.update(image_size=16, threads=2, prefetch=8)
  return c


def test_streamed_run_saves_and_resumes_the_stream_position(tmp_path):
  data_dir = str(tmp_path / "imagenet")
  _write_split(os.path.join(data_dir, "train"), 6, 0)
  _write_split(os.path.join(data_dir, "val"), 2, 1)
  workdir = str(tmp_path / "run")
  loop.run(_config(data_dir), workdir, stop_after_epoch=1)
  first = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert first.architecture.input_shape == (16, 16, 3) and first.architecture.num_classes == 1000
  assert first.meta["data_stream"]["grain"] == {"next_index": 2 * 4}  # 2 batches of 4 consumed
  loop.run(_config(data_dir), workdir)
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert final.meta["epoch"] == 2 and final.meta["data_stream"]["grain"] == {"next_index": 4 * 4}
  assert 0.0 <= final.meta["history"][-1]["test_accuracy"] <= 1.0


def test_streamed_run_stopped_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
  """SIGTERM after step 3 (epoch 2, batch 1 of 2): the checkpoint holds the stream after 3 batches, and the resumed
  run ends with the uninterrupted run's arrays and history."""
  data_dir = str(tmp_path / "imagenet")
  _write_split(os.path.join(data_dir, "train"), 6, 0)
  _write_split(os.path.join(data_dir, "val"), 2, 1)
  loop.run(_config(data_dir), str(tmp_path / "reference"))
  reference = checkpoint.restore(os.path.join(tmp_path / "reference", "checkpoints"))
  add, steps = epoch.Progress.add, []

  def add_then_signal(self, metrics):
    add(self, metrics)
    steps.append(1)
    if len(steps) == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(epoch.Progress, "add", add_then_signal)
  workdir = str(tmp_path / "run")
  with pytest.raises(preemption.Stopped, match=r"stopped by SIGTERM after step 3 \(epoch 2, batch 1 of 2\)"):
    loop.run(_config(data_dir), workdir)
  stopped = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  assert stopped.step == 3 and stopped.meta["data_stream"]["grain"] == {"next_index": 3 * 4}
  monkeypatch.undo()
  loop.run(_config(data_dir), workdir)
  final = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  chex.assert_trees_all_equal(final.variables, reference.variables)
  assert _history(final) == _history(reference)


def _history(restored):
  """The history without wall times and test loss (evaluation autotuning may pick another program after a restart,
  which can change test_loss's last bits: docs/reliability.md)."""
  skip = ("time_train", "time_eval", "time_prune", "images_per_sec", "test_loss")
  return [{k: v for k, v in row.items() if k not in skip} for row in restored.meta["history"]]


def test_streamed_dataset_is_never_loaded_into_memory():
  with pytest.raises(ValueError, match="streamed"):
    data.load_dataset("imagenet2012")
