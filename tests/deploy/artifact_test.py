"""BatchNorm folding equals flax's own eval; the exported artifact runs without jaxsvd/flax and matches it."""

import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsvd import checkpoint, deploy, pruning
from jaxsvd.core.record import Architecture
from jaxsvd.core.structure import ranks
from jaxsvd.deploy import artifact
from jaxsvd.linen.svdifylib import svdify
from jaxsvd.models import SVDSpec
from jaxsvd.models.resnet import ResNet
from jaxsvd.models.vgg import VGG
from jaxsvd.training import xla_options
from jaxsvd.training.train_state import TrainState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
X = jax.random.normal(jax.random.key(0), (3, 12, 12, 3))
TOL = {"atol": 2e-5, "rtol": 2e-5}


def perturbed(variables, seed=0):
  """Running stats far from (0, 1) and γ, β far from (1, 0), so a wrong fold cannot pass."""
  rng = np.random.default_rng(seed)

  def change(path, leaf):
    name = path[-1].key
    if name == "var":
      return jnp.asarray(rng.uniform(0.3, 3.0, leaf.shape), leaf.dtype)
    if name in ("mean", "bias") or (name == "scale" and leaf.ndim == 1):
      return leaf + jnp.asarray(rng.normal(0, 0.5, leaf.shape), leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(change, variables)


def pruned_zoo(model, svd):
  """A zoo model (tiny widths) at half rank when ``svd``, with perturbed BatchNorms."""
  variables = model.init(jax.random.key(1), X)
  if svd is not None:
    params, new_ranks, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=0.5))
    model, variables = model.clone(svd=svd.with_ranks(new_ranks)), {**variables, "params": params}
  return model, perturbed(variables)


def tiny_resnet(svd):  # option-B shortcuts: the projection's BN folds too
  return ResNet((1, 1), (8, 16), 10, svd, shortcut="B")


def tiny_vgg(svd):
  return VGG((8, "M", 16, 16), 10, svd)


@pytest.mark.parametrize("build", [tiny_resnet, tiny_vgg], ids=["resnet", "vgg"])
@pytest.mark.parametrize("svd", [None, SVDSpec("channel", dense_last=False), SVDSpec("spatial")],
                         ids=["dense", "channel", "spatial"])
def test_folding_equals_unfused_eval(build, svd):
  model, variables = pruned_zoo(build(svd), svd)
  expected = model.apply(variables, X, train=False)
  folded = deploy.fold(model, variables, X, train=False)
  assert folded.kept_norms == [] and "batch_stats" not in folded.rest  # every BatchNorm is gone
  assert set(folded.folded_norms.values()) <= set(folded.sites)
  for rule in ("merged", "factored"):  # 'auto' mixes the two per layer
    out = jax.jit(folded.apply)(folded.weights(folded.plan(rule)), X)
    chex.assert_trees_all_close(out, expected, **TOL)


class UserNet(nn.Module):
  """A user's model: Conv-BN-ReLU, Conv(bias)-BN(no scale), a BN behind a ReLU (not foldable), Dense."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3))(x)))
    x = nn.Conv(12, (3, 3), strides=2, padding=1)(x)
    x = nn.BatchNorm(use_running_average=not train, use_scale=False)(x)
    x = nn.BatchNorm(use_running_average=not train)(nn.relu(x))
    return nn.Dense(5)(jnp.mean(x, axis=(1, 2)))


@pytest.mark.parametrize("decomposition", ["channel", pytest.param("spatial", marks=pytest.mark.slow)])
def test_folding_an_svdify_model(decomposition):
  svd_model = svdify(UserNet(), decomposition=decomposition)
  variables = svd_model.init(jax.random.key(0), X)
  params, new_ranks, _ = pruning.prune(variables["params"], pruning.Strategy("ratio", reduce_by=0.4))
  svd_model, variables = svd_model.with_ranks(new_ranks), perturbed({**variables, "params": params})
  expected = svd_model.apply(variables, X)
  folded = deploy.fold(svd_model, variables, X)
  assert folded.folded_norms == {"BatchNorm_0": "Conv_0", "BatchNorm_1": "Conv_1"}
  assert folded.kept_norms == ["BatchNorm_2"]  # behind a ReLU: stays a BatchNorm, read from `rest`
  assert set(folded.ranks()) == {"Conv_0", "Conv_1", "Dense_0"}
  for rule in ("merged", "factored"):
    chex.assert_trees_all_close(folded.apply(folded.weights(folded.plan(rule)), X), expected, **TOL)


def test_train_mode_batchnorm_is_rejected():
  model = UserNet()
  variables = model.init(jax.random.key(0), X)
  with pytest.raises(ValueError, match="BatchNorm_0.*train mode"):
    deploy.fold(model, variables, X, train=True)


def test_plan_mapping_is_checked():
  model, variables = pruned_zoo(tiny_vgg(SVDSpec()), SVDSpec())
  folded = deploy.fold(model, variables, X)
  with pytest.raises(ValueError, match=r"plan\['conv1'\]"):
    folded.plan({"conv1": "fast"})


def _save_checkpoint(directory, arch, variables):
  tx = optax.sgd(0.1)
  state = TrainState(step=np.int32(1), params=variables["params"],
                     model_state={"batch_stats": variables["batch_stats"]}, opt_state=tx.init(variables["params"]),
                     apply_fn=None, tx=tx)
  mngr = checkpoint.manager(directory, async_save=False)
  checkpoint.save(mngr, state, jax.random.key(0), arch)
  mngr.close()


@pytest.mark.gpu
def test_export_cli_artifact_runs_without_jaxsvd_or_flax(tmp_path):
  """Checkpoint → `experiments.export` → a fresh process with jax + numpy only, at two batch sizes (lowered for
  and run on the default backend: CPU here, CUDA under ``pytest -m gpu`` on a GPU machine)."""
  from experiments import export as export_cli

  svd = SVDSpec("spatial")
  full = ranks(jax.eval_shape(lambda: Architecture("resnet8", 4, (12, 12, 3), svd).build_model().init(
      jax.random.key(0), X))["params"])
  arch = Architecture("resnet8", 4, (12, 12, 3), svd, {p: max(1, r // 3) for p, r in full.items()}, full)
  model = arch.build_model()
  variables = perturbed(model.init(jax.random.key(2), X))
  _save_checkpoint(str(tmp_path / "run" / "checkpoints"), arch, variables)
  platform = {"gpu": "cuda"}.get(jax.default_backend(), jax.default_backend())
  info = export_cli.export_run(str(tmp_path / "run"), batch=4, rules=("merged",), platforms=(platform,))
  out = info["directory"]
  assert sorted(os.listdir(out)) == sorted(artifact.FILES) and info["max_abs_diff_vs_eval"] < 1e-4
  assert artifact.read_meta(out)["architecture"]["ranks"] == arch.ranks

  images = {n: np.random.default_rng(n).normal(size=(n, 12, 12, 3)).astype(np.float32) for n in (2, 5)}
  for n, x in images.items():
    np.save(tmp_path / f"x{n}.npy", x)
  code = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {out!r})
      import numpy as np
      import deploy_runner
      predict = deploy_runner.load({out!r})
      for n in (2, 5):
        np.save({str(tmp_path)!r} + f"/y{{n}}.npy", np.asarray(predict(np.load({str(tmp_path)!r} + f"/x{{n}}.npy"))))
      assert 'jaxsvd' not in sys.modules and 'flax' not in sys.modules, sorted(sys.modules)
  """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  for n, x in images.items():
    expected = model.apply(variables, x, train=False)
    chex.assert_trees_all_close(np.load(tmp_path / f"y{n}.npy"), np.asarray(expected), atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # the pairing test below runs a real autotune too (measured_plan itself: the export CLI test)
def test_autotune_picks_a_candidate_that_computes_the_same():
  model, variables = pruned_zoo(tiny_resnet(SVDSpec()), SVDSpec())
  folded = deploy.fold(model, variables, X)
  rule, plan, _, predict = artifact.autotune(folded, X, ("factored", "measured"), trials=1)
  assert rule in ("factored", "measured") and set(plan) == set(folded.sites)
  chex.assert_trees_all_close(predict(X), model.apply(variables, X), **TOL)


def test_autotune_pairs_every_inference_option_set_with_its_own_measured_plan(monkeypatch):
  model, variables = pruned_zoo(tiny_resnet(SVDSpec()), SVDSpec())
  folded = deploy.fold(model, variables, X)
  option_sets = xla_options.candidate_options(inference=True)
  inference = xla_options.INFERENCE_CPU_OPTIONS
  measured_under, timed = [], []

  def tagged_measured(folded, batch, repeats=5, options=None):  # all factored under the inference set only
    measured_under.append(options)
    return folded.plan("factored" if options == inference else "merged")

  real_fastest = xla_options.fastest

  def recording_fastest(candidates, args, trials=3):
    timed.extend((rule, xla_options.describe(options), plan) for (rule, plan, options, _), _ in candidates)
    return real_fastest(candidates, args, trials)

  monkeypatch.setattr(artifact, "measured_plan", tagged_measured)
  monkeypatch.setattr(xla_options, "fastest", recording_fastest)
  rule, plan, options, predict = artifact.autotune(folded, X, ("merged", "measured"), trials=1)
  assert measured_under == option_sets
  names = [xla_options.describe(o) for o in option_sets]
  # 'measured' equals 'merged' (a duplicate, dropped) except under the inference set, where it is all factored
  assert sorted((r, n) for r, n, _ in timed) == sorted([("merged", n) for n in names] + [("measured", "inference")])
  assert all(p == folded.plan("factored" if r == "measured" else "merged") for r, _, p in timed)
  assert (rule, xla_options.describe(options), plan) in timed
  chex.assert_trees_all_close(predict(X), model.apply(variables, X), **TOL)
  chex.assert_trees_all_close(predict(X[:2]), model.apply(variables, X[:2]), **TOL)  # another batch size


@pytest.mark.parametrize("decomposition", ["channel", "spatial"])
def test_factored_layer_runs_the_same_under_every_inference_option_set(decomposition):
  """``run_layer`` (conv → 1×1 conv or kh×1 → 1×kw, + bias, stride 2) under each option set the autotuner tries,
  against a NumPy convolution with the kernel rebuilt from U, s, V."""
  rng = np.random.default_rng(0)
  kh, kw, c, n, r = 3, 3, 4, 5, 3
  rows, cols = (n, kh * kw * c) if decomposition == "channel" else (kw * n, kh * c)
  w = {"U": rng.normal(size=(rows, r)), "s": rng.uniform(0.5, 2, r), "V": rng.normal(size=(cols, r)),
       "bias": rng.normal(size=n)}
  site = deploy.Site("layer", (kh, kw, c, n), (2, 2), ((1, 1), (1, 1)), decomposition, True, (7, 7, c))
  x = rng.normal(size=(2, 7, 7, c)).astype(np.float32)
  m = (w["U"] * w["s"]) @ w["V"].T  # the matrix view; back to HWIO by its definition (jaxsvd/core/factors.py doc)
  kernel = (m.T.reshape(kh, kw, c, n) if decomposition == "channel"
            else m.reshape(kw, n, kh, c).transpose(2, 0, 3, 1))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  expected = sum(np.einsum("bhwc,cn->bhwn", xp[:, i:i + 7:2, j:j + 7:2], kernel[i, j])
                 for i in range(kh) for j in range(kw)) + w["bias"]
  factored = {k: jnp.asarray(v, jnp.float32) for k, v in deploy.execution_weights(site, w, "factored").items()}
  assert "first" in factored
  for options in xla_options.candidate_options(inference=True):
    out = jax.jit(lambda w, x: deploy.run_layer(site, w, x), compiler_options=options)(factored, x)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
