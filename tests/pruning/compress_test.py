"""Data-aware decomposition (jaxsvd.core.calibration, jaxsvd.linen.calibration, the framework-neutral
jaxsvd.pruning.compress and its entry points jaxsvd.linen.compress and jaxsvd.nnx.calibration) against independent
NumPy derivations, and the ``experiments.compress`` command on tiny data."""

import json
import os

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsvd import checkpoint, pruning
from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import conv_view
from jaxsvd.core.record import Architecture
from jaxsvd.linen import calibration as linen_calibration
from jaxsvd.linen import compress as linen_compress
from jaxsvd.linen import decompose, svdify
from jaxsvd.nnx import calibration as nnx_calibration
from jaxsvd.training.train_state import TrainState
from tests import helpers


def _layer(seed, m=12, k=9, n=200, dead=()):
  rs = np.random.RandomState(seed)
  w = rs.randn(m, k)
  x = rs.randn(k, n) * rs.uniform(0.05, 3.0, size=(k, 1))  # anisotropic inputs
  x[list(dead)] = 0.0
  stats = calibration.LayerStats(x @ x.T, np.abs(x).sum(1), n)
  return w, x, stats


def _brute_force_whitened(w, c, rank):
  """argmin ‖(W − B)C^½‖ over rank-r B via the SVD of W·C^½ (scipy-free: C^½ by an SVD of C) and B = A_r C^{-½}."""
  u, lam, _ = np.linalg.svd(c)
  half, inv_half = (u * np.sqrt(lam)) @ u.T, (u / np.sqrt(lam)) @ u.T
  a, s, bt = np.linalg.svd(w @ half)
  return (a[:, :rank] * s[:rank]) @ bt[:rank] @ inv_half


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_whitened_truncation_is_the_output_error_optimum(rank):
  w, x, stats = _layer(rank)
  U, s, V = calibration.truncate(w, calibration.input_scaling(stats, "whitened"), rank)
  b = (U * s) @ V.T
  expected = _brute_force_whitened(w, stats.covariance, rank)
  np.testing.assert_allclose(b, expected, atol=1e-8)
  err = lambda b: np.linalg.norm((w - b) @ x)  # noqa: E731
  plain = calibration.truncate(w, None, rank)
  assert err(b) <= err((plain[0] * plain[1]) @ plain[2].T) + 1e-9
  tail = calibration.spectrum(w, calibration.input_scaling(stats, "whitened"))[rank:]
  np.testing.assert_allclose(err(b) ** 2 / x.shape[1], np.sum(tail**2), rtol=1e-8)


def test_output_weighted_truncation_is_the_optimum_after_the_norm():
  w, x, stats = _layer(11)
  a = np.random.RandomState(0).uniform(0.1, 5.0, size=12)
  U, s, V = calibration.truncate(w, calibration.input_scaling(stats, "whitened"), 3, a)
  expected = _brute_force_whitened(a[:, None] * w, stats.covariance, 3) / a[:, None]  # A⁻¹·argmin for A·W
  np.testing.assert_allclose((U * s) @ V.T, expected, atol=1e-8)
  np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-10)
  tail = calibration.spectrum(w, calibration.input_scaling(stats, "whitened"), a)[3:]
  np.testing.assert_allclose(np.sum((a[:, None] * (w - (U * s) @ V.T) @ x) ** 2) / x.shape[1], np.sum(tail**2),
                             rtol=1e-8)
  weighted = stats.with_output_scale(a[:6])  # a (6,) scale of 12 rows (a spatial view's kw·n) is tiled
  np.testing.assert_array_equal(calibration.output_weights(weighted, "whitened", 12), np.tile(a[:6], 2))
  assert calibration.output_weights(weighted, "plain", 12) is None


class _ConvBN(nn.Module):
  @nn.compact
  def __call__(self, x):
    y = nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3), use_bias=False)(x))
    return nn.Dense(3)(nn.relu(y).mean((1, 2)))


def test_norm_scales_are_gamma_over_sigma_of_the_following_batchnorm():
  x = jnp.ones((2, 5, 5, 3))
  model = _ConvBN()
  variables = jax.tree.map(lambda v: v, model.init(jax.random.key(0), x))
  gamma, var = jnp.array([1.0, 2.0, 0.5, 3.0]), jnp.array([4.0, 1.0, 0.25, 9.0])
  variables["params"]["BatchNorm_0"]["scale"] = gamma
  variables["batch_stats"]["BatchNorm_0"]["var"] = var
  views = svdify(model).report(x).views
  scales = linen_calibration.norm_scales(model, variables, (x,), views)
  assert list(scales) == ["Conv_0"]  # the Dense is not followed by a norm
  np.testing.assert_allclose(scales["Conv_0"], gamma / np.sqrt(var + 1e-5), rtol=1e-6)


@pytest.mark.parametrize("method", calibration.METHODS)
def test_factors_are_orthonormal_and_dead_inputs_give_no_nan(method):
  w, x, stats = _layer(3, dead=(0, 4, 5))
  U, s, V = calibration.truncate(w, calibration.input_scaling(stats, method), 5)
  chex.assert_tree_all_finite((U, s, V))
  np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-10)
  np.testing.assert_allclose(V.T @ V, np.eye(5), atol=1e-10)
  assert np.all(np.diff(s) <= 1e-12) and np.all(s >= 0)
  if method == "whitened":  # on the live inputs the output error is still the optimum of the live subproblem
    live = [i for i in range(9) if i not in (0, 4, 5)]
    best = _brute_force_whitened(w[:, live], stats.covariance[np.ix_(live, live)], 5)
    np.testing.assert_allclose(((U * s) @ V.T)[:, live] @ x[live], best @ x[live], atol=1e-8)


def test_output_energy_is_each_directions_share_of_the_output():
  w, x, stats = _layer(5)
  U, s, V = calibration.truncate(w, None, 9)
  energy = calibration.output_energy(s, V, stats)
  per_direction = [np.sum(((U[:, [i]] * s[i]) @ V[:, [i]].T @ x) ** 2) / x.shape[1] for i in range(9)]
  np.testing.assert_allclose(energy, per_direction, rtol=1e-9)


def _im2col(x, kh, kw, strides, pads):
  """Explicit NHWC im2col: rows (kh, kw, c)-major, as the conv kernel (kh, kw, c, n) flattens."""
  x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  b, h, w, c = x.shape
  rows = []
  for n in range(b):
    for i in range(0, h - kh + 1, strides[0]):
      for j in range(0, w - kw + 1, strides[1]):
        rows.append(x[n, i:i + kh, j:j + kw, :].reshape(-1))
  return np.array(rows)


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_conv_statistics_equal_explicit_im2col(decomposition):
  x = np.random.RandomState(0).randn(2, 7, 6, 3).astype(np.float32)
  pads = ((1, 0), (2, 1))
  conv = nn.Conv(5, (3, 2), strides=(2, 1), padding=pads)
  view = conv_view((3, 2, 3, 5), 1, decomposition)
  gram, abs_sum, count = linen_calibration.layer_moments(conv, jnp.asarray(x), view)
  if decomposition == "channel":
    rows = _im2col(x, 3, 2, (2, 1), pads)
  else:  # (kh × 1) column patches with the row stride, every input column
    rows = _im2col(x, 3, 1, (2, 1), (pads[0], (0, 0)))
  np.testing.assert_allclose(gram, rows.T @ rows, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(abs_sum, np.abs(rows).sum(0), rtol=1e-5)
  assert int(count) == len(rows)


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    y = nn.relu(nn.Conv(8, (3, 3), strides=2, padding="SAME")(x))
    y = nn.DenseGeneral(6, axis=(-2, -1))(y)  # contracts (W, C) per row
    return nn.Dense(4)(nn.relu(y.reshape(y.shape[0], -1)))


def _net_data():
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3)) * jnp.array([3.0, 0.1, 1.0])
  model = _Net()
  return model, model.init(jax.random.key(1), x), x


def test_multi_device_accumulation_equals_one_device():
  model, variables, x = _net_data()
  views = svdify(model).report(x).views
  one = linen_calibration.collect(model, variables, [x[:8], x[8:]], views)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("data",))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
  many = linen_calibration.collect(model, variables, [sharded], views)
  assert sorted(one) == sorted(many) == ["Conv_0", "DenseGeneral_0", "Dense_0"]
  for path in one:
    assert one[path].count == many[path].count
    np.testing.assert_allclose(one[path].second_moment, many[path].second_moment, rtol=1e-4, atol=1e-3)
  assert one["Conv_0"].count == 16 * 4 * 4 and one["Dense_0"].count == 16 and one["DenseGeneral_0"].count == 16 * 4


@pytest.mark.parametrize("method", ["activation", "whitened"])
def test_decompose_data_aware_beats_plain_on_the_layer_outputs(method):
  model, variables, x = _net_data()
  svd_model = svdify(model, ranks={"Conv_0": 2, "DenseGeneral_0": 2, "Dense_0": 2})
  stats = linen_calibration.collect(model, variables, [x], svd_model.report(x).views)
  conv_in = {"Conv_0": x}

  def conv_error(m):
    out = svd_model.apply(decompose(svd_model, variables, x, method=m, stats=stats), conv_in["Conv_0"],
                          capture_intermediates=True, mutable=["intermediates"])[1]["intermediates"]
    ref = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])[1]["intermediates"]
    return float(jnp.sum((out["Conv_0"]["__call__"][0] - ref["Conv_0"]["__call__"][0]) ** 2))

  assert conv_error(method) < conv_error("plain")
  factors = decompose(svd_model, variables, x, method=method, stats=stats)["params"]["Conv_0"]
  chex.assert_trees_all_close(factors["U"].T @ factors["U"], jnp.eye(2), atol=1e-5)


def test_prune_by_output_energy_keeps_the_most_important_directions():
  w, x, stats = _layer(7)
  U, s, V = calibration.truncate(w, None, 9)
  params = {"layer": {"U": jnp.asarray(U), "s": jnp.asarray(s), "V": jnp.asarray(V)}}
  importance = calibration.output_importance(params, {"layer": stats})
  _, ranks, report = pruning.prune(params, pruning.Strategy("energy", energy=0.2), importance=importance)
  order = np.argsort(-importance["layer"], kind="stable")
  cumulative = np.cumsum(importance["layer"][order])
  k = int(np.argmax(cumulative >= 0.8 * cumulative[-1])) + 1
  assert ranks == {"layer": k}
  np.testing.assert_array_equal(report.keep["layer"], order[:k])


def test_compress_meets_the_params_budget_and_whitened_beats_plain():
  model, variables, x = _net_data()
  errors = {}
  for method in ("plain", "whitened"):
    result = linen_compress.compress(model, variables, [x[:8], x[8:]], method=method, params_reduction=3.0)
    assert result.cost <= result.target
    errors[method] = float(jnp.mean((result.model.apply(result.variables, x) - model.apply(variables, x)) ** 2))
  assert errors["whitened"] < errors["plain"]
  with pytest.raises(ValueError, match="exactly one of macs_reduction"):
    linen_compress.compress(model, variables, [x], macs_reduction=2.0, params_reduction=2.0)
  with pytest.raises(ValueError, match="method"):
    linen_compress.compress(model, variables, [x], method="svd", macs_reduction=2.0)


def _dense_source(directory):
  """A dense resnet8 checkpoint (initialized, not trained: the command only needs a run's checkpoint)."""
  arch = Architecture("resnet8", 10, (28, 28, 1))
  variables = arch.build_model().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), train=False)
  tx = optax.sgd(0.1)
  state = TrainState(step=np.int32(1), params=variables["params"], opt_state=tx.init(variables["params"]),
                     model_state={"batch_stats": variables["batch_stats"]}, apply_fn=None, tx=tx)
  mngr = checkpoint.manager(os.path.join(directory, "checkpoints"), async_save=False)
  checkpoint.save(mngr, state, jax.random.key(0), arch)
  mngr.close()
  return directory


@pytest.mark.parametrize("finetune_epochs", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_compress_command_writes_a_run_that_restores_and_exports(tmp_path, finetune_epochs):
  from experiments import compress as compress_cli
  from experiments import export

  data_dir = helpers.write_fashion_mnist(str(tmp_path / "data"), n_train=96, n_test=48)
  source = _dense_source(str(tmp_path / "dense"))
  out = str(tmp_path / "out")
  tiny = [f"--config.data_dir={data_dir}", "--config.batch_size=32", "--config.eval_batch_size=48",
          "--config.max_steps_per_epoch=2", "--config.plots=False", "--config.tensorboard=False",
          "--config.progress_bar=False", "--config.checkpoint.async_save=False"]
  with pytest.raises(SystemExit, match="error: calibration_examples"):
    compress_cli.main(["prog", f"--source={source}", f"--workdir={out}", "--config.calibration_examples=0", *tiny])
  compress_cli.main(["prog", f"--source={source}", f"--workdir={out}", "--config.calibration_examples=64",
                     f"--config.finetune_epochs={finetune_epochs}", *tiny])
  summary = json.load(open(os.path.join(out, "summary.json")))
  assert summary["macs_after"] <= summary["macs_before"] / 2 and "test_accuracy_before_finetune" in summary
  restored = checkpoint.restore(os.path.join(out, "checkpoints"))
  assert dict(restored.architecture.ranks) == summary["ranks"]
  if not finetune_epochs:  # experiments.export (fold, autotune, jax.export: ~30 s) runs in the slow variant
    return
  info = export.export_run(out, batch=4, rules=("merged",), platforms=(jax.default_backend(),))
  assert info["max_abs_diff_vs_eval"] < 1e-3


class _NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), strides=2, rngs=rngs)
    self.gen = nnx.LinearGeneral((4, 8), 6, axis=(-2, -1), rngs=rngs)
    self.out = nnx.Linear(24, 4, rngs=rngs)

  def __call__(self, x):
    y = nnx.relu(self.gen(nnx.relu(self.conv(x))))
    return self.out(y.reshape(y.shape[0], -1))


def test_nnx_statistics_and_whitened_factors():
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 3)) * jnp.array([3.0, 0.1, 1.0])
  reference = _NNXNet(nnx.Rngs(0))
  stats, _ = nnx_calibration.collect(reference, [x])
  rows = _im2col(np.asarray(x), 3, 3, (2, 2), ((0, 1), (0, 1)))  # XLA SAME, stride 2 on 8: 0 before, 1 after
  np.testing.assert_allclose(stats["conv"].second_moment, rows.T @ rows, rtol=1e-5, atol=1e-3)
  full = _NNXNet(nnx.Rngs(0))
  nnx_calibration.svdify(full, [x], method="whitened")  # full rank: the same function
  chex.assert_trees_all_close(full(x), reference(x), atol=1e-4)
  errors = {}
  for method in ("plain", "whitened"):
    model = _NNXNet(nnx.Rngs(0))
    nnx_calibration.svdify(model, [x], ranks={"conv": 2}, method=method)
    errors[method] = float(jnp.sum((model.conv(x) - reference.conv(x)) ** 2))
  assert errors["whitened"] < errors["plain"]
  model = _NNXNet(nnx.Rngs(0))
  _, ranks = nnx_calibration.compress(model, [x], params_reduction=2.0)
  assert sum(r * sum(v.matrix_shape) for r, v in zip(ranks.values(), nnx_calibration.collect(
      _NNXNet(nnx.Rngs(0)), [x])[1].values())) <= (8 * 27 + 6 * 32 + 4 * 24) / 2


def test_compress_program_prints_one_error_line_before_compiling(tmp_path):
  import subprocess
  import sys
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  for args, expected in ((["--config.method=svd"], "error: method='svd' is not one of"),
                         ([], f"error: source: {str(tmp_path / 'none')!r} holds no checkpoints/")):
    proc = subprocess.run([sys.executable, "-m", "experiments.compress", f"--source={tmp_path / 'none'}",
                           f"--workdir={tmp_path / 'out'}", *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1"}, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith(expected), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Compiling" not in proc.stderr


class _ScanBlock(nn.Module):
  @nn.compact
  def __call__(self, x, _):
    return x + nn.Dense(16)(nn.gelu(nn.Dense(16)(nn.LayerNorm()(x)))), None


class _ScannedNet(nn.Module):
  """Blocks as an ``nn.scan`` over ``nn.remat`` (the ViT / MaxText layout)."""

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(16)(x)
    blocks = nn.scan(nn.remat(_ScanBlock), variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
    return nn.Dense(4)(blocks()(x, None)[0])


def test_compress_of_a_scanned_remat_stack_measures_its_slices_and_meets_the_budget():
  x = jax.random.normal(jax.random.key(0), (8, 16))
  net = _ScannedNet()
  variables = net.init(jax.random.key(1), x)
  out = linen_compress.compress(net, variables, [x], method="whitened", params_reduction=2.0)
  assert out.plain == {} and set(out.stats) == set(out.ranks) and out.cost <= out.target
  chex.assert_shape(out.stats["ScanCheckpoint_ScanBlock_0/Dense_0"].second_moment, (3, 16, 16))
  full = linen_compress.compress(net, variables, [x], method="whitened", params_reduction=1.0)
  assert full.plain == {}
  np.testing.assert_allclose(full.model.apply(full.variables, x), net.apply(variables, x), atol=1e-4)


class _EinsumNet(nn.Module):
  """A linen attention-style projection: ``nn.Einsum`` with its string, then a Dense head."""

  @nn.compact
  def __call__(self, x):
    q = nn.Einsum((16, 2, 8), "btd,dnh->btnh", use_bias=False, name="q")(x)
    return nn.Dense(4)(q.reshape(*q.shape[:2], -1))


def test_linen_einsum_statistics_equal_an_explicit_reshape_and_whitened_beats_plain():
  x = jax.random.normal(jax.random.key(0), (6, 5, 16)) * jnp.geomspace(4.0, 0.02, 16)
  net = _EinsumNet()
  variables = net.init(jax.random.key(1), x)
  views = svdify(net).report(x).views
  stats = linen_calibration.collect(net, variables, [x], views)
  rows = np.asarray(x, np.float64).reshape(-1, 16)
  np.testing.assert_allclose(stats["q"].second_moment, rows.T @ rows, rtol=1e-4, atol=1e-3)
  errors = {}
  for method in ("plain", "whitened"):
    out = linen_compress.compress(net, variables, [x], method=method, params_reduction=3.0)
    assert out.plain == {} and "q" in out.ranks
    q = lambda m, v: m.apply(v, x, capture_intermediates=True, mutable=["intermediates"])[1]["intermediates"]["q"]
    errors[method] = float(jnp.sum((q(out.model, out.variables)["__call__"][0]
                                    - q(net, variables)["__call__"][0]) ** 2))
  assert errors["whitened"] < 0.5 * errors["plain"], errors
