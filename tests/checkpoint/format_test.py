"""Checkpoints own their architecture record: written and read by jaxsvd.checkpoint alone (no experiment code)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import numpy as np
import optax
import pytest

from jaxsvd import checkpoint
from jaxsvd.checkpoint import integrity
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks
from jaxsvd.models import SVDSpec, build_model
from jaxsvd.training.train_state import TrainState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUT = (12, 12, 3)
PRUNED = {"stage1_block0/conv1": 3, "stage2_block0/conv2": 7}


def _state(model, step=5):
  variables = model.init(jax.random.key(0), np.zeros((1, *INPUT), np.float32))
  tx = optax.adam(1e-3)
  return TrainState(step=np.asarray(step, np.int32), params=variables["params"],
                    model_state={k: v for k, v in variables.items() if k != "params"},
                    opt_state=tx.init(variables["params"]), apply_fn=model.apply, tx=tx)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """A pruned SVD ResNet-8 saved by the library, with its architecture record."""
  widths = {"stage3_block0/conv1": 9}
  full = ranks(jax.eval_shape(build_model("resnet8", 4, SVDSpec(), widths=widths).init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, *INPUT), np.float32))["params"])
  arch = Architecture("resnet8", 4, INPUT, SVDSpec(), {**full, **PRUNED}, full, widths)
  state = _state(arch.build_model())
  directory = str(tmp_path_factory.mktemp("ck"))
  mngr = checkpoint.manager(directory, async_save=False)
  checkpoint.save(mngr, state, jax.random.key(7), arch, run={"epoch": 2, "note": "anything JSON"})
  mngr.close()
  return directory, arch, state


def test_restore_needs_only_the_directory_in_a_fresh_process(saved, tmp_path):
  directory, arch, state = saved
  x = np.random.default_rng(0).normal(size=(2, *INPUT)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  code = textwrap.dedent(f"""
      import numpy as np
      from jaxsvd import checkpoint
      from jaxsvd.checkpoint import integrity
      r = checkpoint.restore({directory!r})
      np.save({str(tmp_path / "y.npy")!r}, np.asarray(r.model.apply(r.variables, np.load({str(tmp_path / "x.npy")!r}))))
      print(r.architecture.ranks["stage1_block0/conv1"], r.architecture.widths, r.meta["note"])
  """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["3", "{'stage3_block0/conv1':", "9}", "anything", "JSON"]
  expected = arch.build_model().apply(state.variables, x)
  np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_record_round_trips_and_train_item_restores(saved):
  directory, arch, state = saved
  restored = checkpoint.restore(directory)
  assert restored.architecture == arch and restored.step == 5 and restored.meta["epoch"] == 2
  assert Architecture.from_json(json.loads(json.dumps(arch.to_json()))) == arch
  chex.assert_trees_all_equal(restored.variables, state.variables)
  train = checkpoint.restore_train(directory, 5, jax.eval_shape(state.tx.init, state.params))
  chex.assert_trees_all_equal(jax.random.key_data(train["rng"]), jax.random.key_data(jax.random.key(7)))
  chex.assert_trees_all_equal(train["opt_state"], state.opt_state)


def _copied(directory, dst):
  step = checkpoint.resolve(directory)[1]
  shutil.copytree(os.path.join(directory, str(step)), os.path.join(dst, str(step)))
  return str(dst), step


def _edit_json(path, **changes):
  """Edits an item's JSON and re-writes the step's checksums (these tests are about what the record says)."""
  record = json.load(open(path))
  record.update(changes)
  _write_json(path, record)
  return record


def _write_json(path, record):
  json.dump(record, open(path, "w"))
  integrity.write_checksums(os.path.dirname(os.path.dirname(path)))


def test_rank_mismatch_names_the_leaf(saved, tmp_path):
  d, step = _copied(saved[0], tmp_path / "ck")
  record_file = os.path.join(d, str(step), "architecture", "metadata")
  record = json.load(open(record_file))
  _edit_json(record_file, ranks={**record["ranks"], "stage1_block0/conv1": 4})
  with pytest.raises(checkpoint.CheckpointError, match="stage1_block0/conv1/.*shape"):
    checkpoint.restore(d)


@pytest.mark.parametrize("item", ["meta", "architecture"])
def test_unknown_format_version_is_one_line_naming_it(saved, tmp_path, item):
  d, step = _copied(saved[0], tmp_path / "ck")
  _edit_json(os.path.join(d, str(step), item, "metadata"), format_version=99)
  with pytest.raises(checkpoint.CheckpointError, match="format_version=99") as err:
    checkpoint.restore(d)
  assert "\n" not in str(err.value)
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
    checkpoint.restore(str(tmp_path / "nothing"))


def test_missing_record_field_is_named(saved, tmp_path):
  d, step = _copied(saved[0], tmp_path / "ck")
  record_file = os.path.join(d, str(step), "architecture", "metadata")
  record = json.load(open(record_file))
  del record["input_shape"]
  _write_json(record_file, record)
  with pytest.raises(checkpoint.CheckpointError, match="input_shape"):
    checkpoint.restore(d)


@pytest.mark.parametrize("checksums", [True, False])
def test_corrupt_array_file_is_one_line(saved, tmp_path, checksums):
  """With checksums the file is named before anything is read; without (older steps) TensorStore's multi-line
  error is cut to its first line."""
  d, step = _copied(saved[0], tmp_path / "ck")
  if not checksums:
    os.remove(os.path.join(d, str(step), integrity.CHECKSUMS_FILE))
  for root, _, files in os.walk(os.path.join(d, str(step), "model")):
    for name in files:
      if "metadata" not in name and not name.startswith("_"):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  match = (f"checkpoint step {step} is damaged: file model/.* is truncated" if checksums
           else "cannot (restore|read array metadata of) .*model")
  with pytest.raises(checkpoint.CheckpointError, match=match) as err:
    checkpoint.restore(d)
  assert "\n" not in str(err.value)


def _dummy_state(step, w, tx):
  params = {"w": w}
  return TrainState(step=np.asarray(step, np.int32), params=params, model_state={}, opt_state=tx.init(params), apply_fn=None,
                    tx=tx)


DUMMY = Architecture("resnet8", 10, (28, 28, 1))


def test_leftover_tmp_dir_and_kill_mid_save(tmp_path):
  """A process killed (SIGKILL) while saving leaves the previous checkpoint loadable."""
  ckpt = str(tmp_path / "ck")
  code = textwrap.dedent(f"""
      import jax, numpy as np, optax
      from jaxsvd import checkpoint
      from jaxsvd.checkpoint import integrity
      from jaxsvd.core.record import Architecture
      from tests.checkpoint.format_test import _dummy_state
      tx = optax.sgd(0.1, 0.9)
      mngr = checkpoint.manager({ckpt!r}, max_to_keep=2, async_save=True)
      for step in range(1, 10000):
        state = _dummy_state(step, np.full((512, 1024), float(step), np.float32), tx)
        checkpoint.save(mngr, state, jax.random.key(0), Architecture("resnet8", 10, (28, 28, 1)))
        print(step, flush=True)
  """)
  proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  seen = 0
  while seen < 4:
    line = proc.stdout.readline()
    assert line, "saver exited early"
    seen = int(line)
  time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  os.makedirs(os.path.join(ckpt, "999.orbax-checkpoint-tmp-0"), exist_ok=True)  # a torn save
  directory, step = checkpoint.resolve(ckpt)
  assert step >= 2
  meta = checkpoint.read_meta(directory, step)
  item = checkpoint.restore_item(directory, step, "model", {
      "params": {"w": jax.ShapeDtypeStruct((512, 1024), np.float32)}, "model_state": {}})
  np.testing.assert_array_equal(item["params"]["w"], np.full((512, 1024), float(meta["step"]), np.float32))
  assert checkpoint.read_architecture(directory, step) == DUMMY


def test_rotation_keeps_last_n_and_best(tmp_path):
  tx = optax.sgd(0.1)
  mngr = checkpoint.manager(str(tmp_path), max_to_keep=2, best_metric="test_accuracy", async_save=False)
  for step, acc in zip(range(1, 7), [0.1, 0.9, 0.2, 0.3, 0.4, 0.5]):
    checkpoint.save(mngr, _dummy_state(step, np.zeros(3, np.float32), tx), jax.random.key(0), DUMMY,
                    metrics={"test_accuracy": acc})
  mngr.wait_until_finished()
  assert sorted(mngr.all_steps()) == [2, 5, 6]  # best (0.9 at step 2) + the last two
  mngr.close()
