"""Checkpoint integrity without training: checksums, rotation across restarts, non-finite refusal, a full disk, and
the workdir lock (two processes, a SIGKILLed holder)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import jax
import numpy as np
import optax
import pytest

from jaxsvd import checkpoint
from jaxsvd.checkpoint import integrity
from jaxsvd.checkpoint import workdir as workdir_lib
from jaxsvd.core.record import Architecture
from jaxsvd.training.train_state import TrainState

DUMMY = Architecture("resnet8", 10, (28, 28, 1))
TX = optax.sgd(0.1)
ABSTRACT = {"params": {"w": jax.ShapeDtypeStruct((64, 64), np.float32)}, "model_state": {}}


def _state(step, value=None):
  params = {"w": np.full((64, 64), float(step) if value is None else value, np.float32)}
  return TrainState(step=np.array(step, np.int32), params=params, model_state={}, opt_state=TX.init(params),
                    apply_fn=None, tx=TX)


def _save_steps(directory, accuracies, async_save=False, max_to_keep=2):
  mngr = checkpoint.manager(directory, max_to_keep, "test_accuracy", async_save=async_save)
  for step, acc in accuracies:
    checkpoint.save(mngr, _state(step), jax.random.key(0), DUMMY, {"epoch": step}, {"test_accuracy": acc})
  mngr.close()


def _restore_w(directory, step):
  return checkpoint.restore_item(directory, step, "model", ABSTRACT)["params"]["w"]


@pytest.mark.parametrize("async_save", [False, True])
def test_rotation_survives_restarts(tmp_path, async_save):
  """Each save in a new manager (as each resumed process has): still the last two plus the best, and the best is
  judged over steps saved before the restarts (Orbax stores the metric because ``best_fn`` is set)."""
  for step, acc in [(1, 0.5), (2, 0.9), (3, 0.6), (4, 0.5), (5, 0.4), (6, 0.3)]:
    _save_steps(str(tmp_path), [(step, acc)], async_save)
  assert checkpoint.steps(str(tmp_path)) == [2, 5, 6]
  for step in (2, 5, 6):  # every kept step carries checksums of all its item files, and they verify
    files = integrity.read_checksums(str(tmp_path / str(step)))
    assert {f.split("/")[0] for f in files} >= {"model", "train", "meta", "architecture", "metrics"}
    np.testing.assert_array_equal(_restore_w(str(tmp_path), step), np.full((64, 64), step, np.float32))


def test_steps_written_without_stored_metrics_rotate_out(tmp_path):
  """Steps from before this fix have no metrics item; they used to be kept forever after a restart."""
  _save_steps(str(tmp_path), [(1, 0.9), (2, 0.8), (3, 0.7)], max_to_keep=5)
  for step in (1, 2, 3):
    shutil.rmtree(tmp_path / str(step) / "metrics")
  _save_steps(str(tmp_path), [(4, 0.1), (5, 0.2)])
  assert checkpoint.steps(str(tmp_path)) == [4, 5]


def _damage(step_dir, how):
  files = integrity.read_checksums(step_dir)
  rel = max((r for r in files if r.startswith("model/")), key=lambda r: files[r][0])
  path = os.path.join(step_dir, *rel.split("/"))
  data = bytearray(open(path, "rb").read())
  if how == "flip":
    data[len(data) // 2] ^= 0x10
    open(path, "wb").write(bytes(data))
  elif how == "truncate":
    open(path, "wb").write(bytes(data[: len(data) // 2]))
  else:
    os.remove(path)
  return rel


@pytest.mark.parametrize("how, words", [("flip", "fails its CRC-32 checksum"), ("truncate", "is truncated"),
                                        ("remove", "is missing")])
def test_damaged_array_file_is_one_line_naming_step_and_file(tmp_path, how, words):
  _save_steps(str(tmp_path), [(1, 0.5), (2, 0.6)])
  rel = _damage(str(tmp_path / "2"), how)
  with pytest.raises(checkpoint.CheckpointError) as err:
    _restore_w(str(tmp_path), 2)
  assert str(err.value).startswith(f"checkpoint step 2 is damaged: file {rel} {words}") and "\n" not in str(err.value)
  np.testing.assert_array_equal(_restore_w(str(tmp_path), 1), np.full((64, 64), 1, np.float32))


def test_a_changed_record_is_caught_too(tmp_path):
  _save_steps(str(tmp_path), [(1, 0.5)])
  meta_file = tmp_path / "1" / "meta" / "metadata"
  meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "epoch": 7}))
  with pytest.raises(checkpoint.CheckpointError, match="step 1 is damaged: file meta/metadata fails"):
    checkpoint.read_meta(str(tmp_path), 1)


def test_non_finite_state_is_never_saved(tmp_path):
  mngr = checkpoint.manager(str(tmp_path), 2, "test_accuracy", async_save=False)
  checkpoint.save(mngr, _state(1), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.1})
  for bad in (np.nan, np.inf):
    with pytest.raises(checkpoint.CheckpointError, match="refusing to save step 2: non-finite values in params/w"):
      checkpoint.save(mngr, _state(2, bad), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.2})
  mngr.close()
  assert checkpoint.steps(str(tmp_path)) == [1]


@pytest.fixture
def small_tmpfs(tmp_path):
  """A 2 MiB tmpfs (root only; skipped where mounting is not allowed)."""
  mount = tmp_path / "tmpfs"
  mount.mkdir()
  if os.geteuid() != 0 or shutil.which("mount") is None:
    pytest.skip("mounting a tmpfs needs root")
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
  if done.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("async_save", [False, True])
def test_disk_full_during_save_is_one_line_and_keeps_the_previous_step(small_tmpfs, async_save):
  directory = str(small_tmpfs / f"ck{uuid.uuid4().hex[:6]}")
  mngr = checkpoint.manager(directory, 2, "test_accuracy", async_save=async_save)
  checkpoint.save(mngr, _state(1), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.1})
  checkpoint.wait(mngr)
  with open(small_tmpfs / "filler", "wb") as f:  # leave ~4 KiB: less than one step's 16 KiB array
    f.write(b"\0" * (integrity.free_bytes(str(small_tmpfs)) - 4096))
  with pytest.raises(checkpoint.CheckpointSaveError) as err:
    checkpoint.save(mngr, _state(2), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.2})
    checkpoint.wait(mngr)
  message = str(err.value)
  assert "\n" not in message and f"to {directory} failed: No space left on device (" in message
  assert "bytes free there); stopped; the latest complete checkpoint is step 1" in message
  os.remove(small_tmpfs / "filler")
  mngr.close()
  assert checkpoint.steps(directory) == [1]
  np.testing.assert_array_equal(_restore_w(directory, 1), np.full((64, 64), 1, np.float32))


def _hold_lock_in_subprocess(workdir):
  code = textwrap.dedent(f"""
      import importlib.util, time
      spec = importlib.util.spec_from_file_location("workdir", {workdir_lib.__file__!r})  # without importing jax
      workdir = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(workdir)
      with workdir.lock({str(workdir)!r}):
        print("held", flush=True)
        time.sleep(600)
  """)
  proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_workdir_lock_second_holder_fails_and_a_killed_holder_is_taken_over(tmp_path, caplog):
  holder = _hold_lock_in_subprocess(tmp_path)
  try:
    with pytest.raises(workdir_lib.WorkdirLockedError) as err:
      with workdir_lib.lock(str(tmp_path)):
        pass
    assert f"is in use by pid {holder.pid} on host " in str(err.value) and "\n" not in str(err.value)
  finally:
    holder.kill()
    holder.wait()
  with caplog.at_level("INFO", logger="jaxsvd"):
    with workdir_lib.lock(str(tmp_path)):
      with workdir_lib.lock(str(tmp_path)):  # re-entrant in one process
        record = json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())
  assert f"taking over from pid {holder.pid} on host" in caplog.text
  assert record["pid"] == os.getpid()
  assert (tmp_path / workdir_lib.LOCK_FILE).read_text() == ""  # released cleanly: nothing left to take over


def test_failed_async_save_names_its_step_without_orbax_tracebacks(small_tmpfs, capfd):
  directory = str(small_tmpfs / f"ck{uuid.uuid4().hex[:6]}")
  mngr = checkpoint.manager(directory, 2, "test_accuracy", async_save=True)
  checkpoint.save(mngr, _state(1), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.1})
  checkpoint.wait(mngr)
  with open(small_tmpfs / "filler", "wb") as f:
    f.write(b"\0" * (integrity.free_bytes(str(small_tmpfs)) - 4096))
  checkpoint.save(mngr, _state(2), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.2})  # fails in the background
  with pytest.raises(checkpoint.CheckpointSaveError) as err:
    checkpoint.save(mngr, _state(3), jax.random.key(0), DUMMY, {}, {"test_accuracy": 0.3})
  assert str(err.value).startswith(f"writing checkpoint step 2 to {directory} failed: No space left on device (")
  assert str(err.value).endswith("; the latest complete checkpoint is step 1")
  assert "Traceback" not in capfd.readouterr().err
  os.remove(small_tmpfs / "filler")
  mngr.close()


def test_metrics_row_on_a_full_disk_is_one_line(small_tmpfs):
  from experiments.report.metrics import MetricsWriter

  writer = MetricsWriter(str(small_tmpfs), tensorboard=False)
  writer.write({"epoch": 1, "loss": 0.5})
  with open(small_tmpfs / "filler", "wb") as f:
    f.write(b"\0" * integrity.free_bytes(str(small_tmpfs)))
  with pytest.raises(checkpoint.CheckpointSaveError) as err:
    for epoch in range(2, 2000):  # the page cache absorbs small writes until the file system's blocks run out
      writer.write({"epoch": epoch, "loss": 0.5 + 0.1 * epoch})
  message = str(err.value)
  assert "\n" not in message and message.startswith("writing the metrics row of epoch ")
  assert f"to {small_tmpfs / 'metrics.csv'} failed: No space left on device (" in message
  os.remove(small_tmpfs / "filler")
