"""pmap / sharding / single device give the same training, across pruning events (4 forced CPU devices)."""

import os

import chex
import jax
import numpy as np
import pytest

from experiments.run import loop
from jaxsvd import checkpoint
from jaxsvd.training.parallel import DataParallel
from tests import helpers


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")), n_train=192, n_test=48)


def _config(data_dir, **overrides):
  """Tiny loop with plain SGD at a small LR: a regime where float reduction-order noise (1e-7) is not
  amplified chaotically, so N-device and 1-device training must agree to a tight tolerance."""
  c = helpers.tiny_config(data_dir, num_epochs=3, **overrides)
  c.optimizer.update(optimizer="sgd", learning_rate=0.005, momentum=0.9, schedule="constant")
  return c


def _final(workdir):
  return checkpoint.restore(os.path.join(workdir, "checkpoints"))


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("single"))
  loop.run(_config(data_dir), workdir)
  return _final(workdir)


def test_forced_devices_present():
  assert jax.device_count() >= 4


def _need_devices(n: int) -> None:
  """Skips where the default backend has fewer than ``n`` devices (a one-GPU machine under ``pytest -m gpu``)."""
  if jax.device_count() < n:
    pytest.skip(f"needs {n} devices of the default backend ({jax.default_backend()}: {jax.device_count()})")


# pmap stays in the default run through test_single_device_checkpoint_resumes_under_pmap; the 1-device variants run
# the data-parallel code on a one-GPU machine (``pytest -m gpu`` selects slow tests too)
@pytest.mark.gpu
@pytest.mark.parametrize("kind, devices", [("sharding", 2), pytest.param("pmap", 2, marks=pytest.mark.slow),
                                           pytest.param("pmap", 4, marks=pytest.mark.slow),
                                           pytest.param("sharding", 1, marks=pytest.mark.slow),
                                           pytest.param("pmap", 1, marks=pytest.mark.slow)])
def test_same_params_as_single_device(data_dir, single, tmp_path, kind, devices):
  _need_devices(devices)
  c = _config(data_dir, parallel=kind, num_devices=devices)
  summary = loop.run(c, str(tmp_path))
  multi = _final(str(tmp_path))  # a multi-device checkpoint restores on one device
  assert multi.architecture.ranks == single.architecture.ranks  # same pruning decisions on every path
  assert len(multi.meta["pruning_events"]) >= 2
  chex.assert_trees_all_close(multi.variables, single.variables, atol=5e-4, rtol=1e-3)
  assert summary["rank_after"] < summary["rank_before"]


@pytest.mark.gpu
def test_single_device_checkpoint_resumes_under_pmap(data_dir, single, tmp_path):
  _need_devices(2)
  c = _config(data_dir)
  loop.run(c, str(tmp_path), stop_after_epoch=2)
  c.parallel, c.num_devices = "pmap", 2
  loop.run(c, str(tmp_path))
  chex.assert_trees_all_close(_final(str(tmp_path)).variables, single.variables, atol=5e-4, rtol=1e-3)


def test_indivisible_batch_is_a_clear_error():
  par = DataParallel("pmap", 4)
  with pytest.raises(ValueError, match="not divisible by the 4 devices"):
    par.shard_batch({"image": np.zeros((6, 2, 2, 1)), "label": np.zeros(6)})


def test_unknown_parallel_kind():
  with pytest.raises(ValueError, match="parallel"):
    DataParallel("fsdp")
