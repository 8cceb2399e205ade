import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import chex
import jax
import numpy as np
import pytest

from experiments import train
from jaxsvd import checkpoint
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run that pruned (online at epochs 2-3, final at 3), with checkpoints at full and pruned ranks."""
  root = tmp_path_factory.mktemp("ckpt")
  data_dir = helpers.write_fashion_mnist(str(root / "data"))
  c = helpers.tiny_config(data_dir)
  c.checkpoint.max_to_keep = 10
  workdir = str(root / "run")
  train.run(c, workdir)
  return c, workdir, data_dir


def _restore_outputs_in_subprocess(path, step, x_path, out_path):
  code = textwrap.dedent(f"""
      import numpy as np
      from jaxsvd import checkpoint
      apply, meta = checkpoint.load_for_inference({path!r}, {step})
      np.save({out_path!r}, np.asarray(apply(np.load({x_path!r}))))
      print(meta["ranks"])
  """)
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return np.load(out_path)


def test_full_rank_and_pruned_checkpoints_restore_in_fresh_process(trained, tmp_path):
  _, workdir, _ = trained
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  first, last = steps[0], steps[-1]
  x = np.random.default_rng(0).normal(size=(5, 28, 28, 1)).astype(np.float32)
  np.save(tmp_path / "x.npy", x)
  for step in (first, last):
    apply, _ = checkpoint.load_for_inference(ckpt_dir, step)  # same jitted program as the subprocess
    expected = apply(x)
    got = _restore_outputs_in_subprocess(ckpt_dir, step, str(tmp_path / "x.npy"), str(tmp_path / f"{step}.npy"))
    np.testing.assert_array_equal(got, np.asarray(expected))
  full, pruned = checkpoint.read_meta(ckpt_dir, first), checkpoint.read_meta(ckpt_dir, last)
  assert sum(pruned["ranks"].values()) < sum(full["ranks"].values())
  assert full["ranks"] == full["original_ranks"]


def test_resume_is_bit_identical(trained, tmp_path):
  c, workdir, data_dir = trained
  resumed = str(tmp_path / "resumed")
  assert train.run(c, resumed, stop_after_epoch=3) is None  # killed after the first pruning event
  assert checkpoint.read_meta(os.path.join(resumed, "checkpoints"), 3 * 3)["epoch"] == 3
  train.run(c, resumed)
  a = checkpoint.restore(os.path.join(workdir, "checkpoints"))
  b = checkpoint.restore(os.path.join(resumed, "checkpoints"))
  assert a.meta["ranks"] == b.meta["ranks"] and a.step == b.step
  chex.assert_trees_all_equal(a.variables, b.variables)
  ta = checkpoint.restore_train(a.directory, a.step, _abstract_opt_state(a.directory, a.step))
  tb = checkpoint.restore_train(b.directory, b.step, _abstract_opt_state(b.directory, b.step))
  chex.assert_trees_all_equal(jax.random.key_data(ta["rng"]), jax.random.key_data(tb["rng"]))
  chex.assert_trees_all_equal(ta["opt_state"], tb["opt_state"])


def _abstract_opt_state(directory, step):
  """Abstract optimizer state rebuilt from the checkpoint's own config (as resume does)."""
  from ml_collections import ConfigDict
  from jaxsvd import optim
  meta = checkpoint.read_meta(directory, step)
  restored = checkpoint.restore(directory, step)
  cfg = ConfigDict(meta["config"])
  tx = optim.make_optimizer(cfg.optimizer, restored.variables["params"], cfg.max_steps_per_epoch, cfg.num_epochs)
  return jax.eval_shape(tx.init, restored.variables["params"])


def _copied_latest(workdir, dst):
  """A copy of the run's latest checkpoint step (to damage), with its metadata file and contents."""
  import shutil
  src = os.path.join(workdir, "checkpoints")
  step = checkpoint._resolve(src, None)[1]
  shutil.copytree(os.path.join(src, str(step)), os.path.join(dst, str(step)))
  meta_file = os.path.join(dst, str(step), "meta", "metadata")
  return str(dst), step, meta_file, json.load(open(meta_file))


def test_rank_mismatch_names_the_leaf(trained, tmp_path):
  d, step, meta_file, meta = _copied_latest(trained[1], tmp_path / "ck")
  layer = sorted(meta["ranks"])[0]
  meta["ranks"][layer] += 1
  json.dump(meta, open(meta_file, "w"))
  with pytest.raises(checkpoint.CheckpointError, match=f"{layer}/.*shape"):
    checkpoint.restore(d)


def test_unknown_format_version_and_missing(trained, tmp_path):
  d, step, meta_file, meta = _copied_latest(trained[1], tmp_path / "ck")
  json.dump({**meta, "format_version": 99}, open(meta_file, "w"))
  with pytest.raises(checkpoint.CheckpointError, match="format_version=99"):
    checkpoint.restore(d)
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at"):
    checkpoint.restore(str(tmp_path / "nothing"))


def test_corrupt_array_file_is_reported(trained, tmp_path):
  d, step, _, _ = _copied_latest(trained[1], tmp_path / "ck")
  model_dir = os.path.join(d, str(step), "model")
  for root, _, files in os.walk(model_dir):
    for name in files:
      if "metadata" not in name and not name.startswith("_"):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match="model"):
    checkpoint.restore(d)


def test_leftover_tmp_dir_and_kill_mid_save(tmp_path):
  """A process killed (SIGKILL) while saving leaves the previous checkpoint loadable."""
  ckpt = str(tmp_path / "ck")
  code = textwrap.dedent(f"""
      import jax, numpy as np
      from jaxsvd import checkpoint
      from jaxsvd.train_state import TrainState
      import optax
      params = {{"w": np.ones((512, 1024), np.float32)}}
      tx = optax.sgd(0.1, 0.9)
      mngr = checkpoint.manager({ckpt!r}, max_to_keep=2, async_save=True)
      for step in range(1, 10000):
        state = TrainState(step=np.int32(step), params={{"w": params["w"] * step}}, model_state={{}},
                           opt_state=tx.init(params), apply_fn=None, tx=tx)
        checkpoint.save(mngr, state, jax.random.key(0), {{"step": step, "ranks": {{}}}})
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
  directory, step = checkpoint._resolve(ckpt, None)
  assert step >= 2
  meta = checkpoint.read_meta(directory, step)
  train_item = checkpoint.restore_item(directory, step, "model", {
      "params": {"w": jax.ShapeDtypeStruct((512, 1024), np.float32)}, "model_state": {}})
  np.testing.assert_array_equal(train_item["params"]["w"], np.full((512, 1024), float(meta["step"]), np.float32))


def test_rotation_keeps_last_n_and_best(tmp_path):
  import optax
  from jaxsvd.train_state import TrainState
  tx = optax.sgd(0.1)
  params = {"w": np.zeros(3, np.float32)}
  mngr = checkpoint.manager(str(tmp_path), max_to_keep=2, best_metric="test_accuracy", async_save=False)
  for step, acc in zip(range(1, 7), [0.1, 0.9, 0.2, 0.3, 0.4, 0.5]):
    state = TrainState(step=np.int32(step), params=params, model_state={}, opt_state=tx.init(params),
                       apply_fn=None, tx=tx)
    checkpoint.save(mngr, state, jax.random.key(0), {"step": step}, metrics={"test_accuracy": acc})
  mngr.wait_until_finished()
  assert sorted(mngr.all_steps()) == [2, 5, 6]  # best (0.9 at step 2) + the last two
  mngr.close()
