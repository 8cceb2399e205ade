"""Flax NNX models in SVD form (``jaxsvd.nnx``, ``jaxsvd.checkpoint.nnx``) on user-style models.

The models below are written the way an NNX user writes them; the references are flax's own dense layers and
NumPy's SVD (the best rank-k approximation), not our code.
"""

import os
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsvd.checkpoint import CheckpointError
from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.nnx import layers as nnx_layers
from jaxsvd.nnx import svdifylib as svdify_nnx
from jaxsvd.pruning import Strategy
from jaxsvd.training.losses import RegularizerConfig
from tests.helpers import learnable_images

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CNN(nnx.Module):
  """Conv-BN-ReLU ×2, a grouped conv (stays dense), a 1-D causal conv over the flattened map, a classifier."""

  def __init__(self, *, rngs: nnx.Rngs, classes: int = 4):
    self.conv1 = nnx.Conv(1, 8, (3, 3), rngs=rngs)
    self.bn1 = nnx.BatchNorm(8, rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, padding="CIRCULAR", rngs=rngs)
    self.bn2 = nnx.BatchNorm(16, rngs=rngs)
    self.grouped = nnx.Conv(16, 16, (3, 3), feature_group_count=4, rngs=rngs)
    self.temporal = nnx.Conv(16, 12, 3, padding="CAUSAL", rngs=rngs)
    self.head = nnx.Linear(12, classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))
    x = nnx.relu(self.bn2(self.conv2(x)))
    x = self.grouped(x)
    x = self.temporal(x.reshape(x.shape[0], -1, x.shape[-1]))
    return self.head(x.mean(axis=1))


class Block(nnx.Module):
  def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
    self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
    self.mlp = nnx.List([nnx.Linear(dim, 2 * dim, rngs=rngs), nnx.Linear(2 * dim, dim, rngs=rngs)])

  def __call__(self, x, mask):
    x = x + self.attn(self.ln1(x), mask=mask)
    return x + self.mlp[1](nnx.gelu(self.mlp[0](self.ln2(x))))


class LM(nnx.Module):
  """Decoder-only transformer: token + position embeddings, 2 blocks, logits tied to the token embedding."""

  def __init__(self, *, rngs: nnx.Rngs, vocab: int = 24, dim: int = 16, heads: int = 2, length: int = 8):
    self.embed = nnx.Embed(vocab, dim, rngs=rngs)
    self.pos = nnx.Embed(length, dim, rngs=rngs)
    self.blocks = nnx.List([Block(dim, heads, rngs=rngs) for _ in range(2)])
    self.ln = nnx.LayerNorm(dim, rngs=rngs)

  def __call__(self, tokens):
    x = self.embed(tokens) + self.pos(jnp.arange(tokens.shape[-1]))
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.embed.attend(self.ln(x))


def rngs(seed=0):
  """RBG keys: threefry costs seconds of XLA compile per parameter shape on CPU (and checkpoints must keep any key
  implementation)."""
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def cnn_batch():
  images, labels = learnable_images(16, (12, 12), 4, seed=0)
  return jnp.asarray(images[..., None] / 255.0, jnp.float32), jnp.asarray(labels, jnp.int32)


def lm_batch():
  start = np.random.default_rng(0).integers(0, 24, (8, 1))
  seq = (start + np.arange(9)) % 24  # next token = token + 1
  return jnp.asarray(seq[:, :-1], jnp.int32), jnp.asarray(seq[:, 1:], jnp.int32)


MODELS = {"cnn": (CNN, cnn_batch), "lm": (LM, lm_batch)}
CONVERTED = {"cnn": {"conv1", "conv2", "temporal", "head"},
             "lm": {"embed", "pos", *(f"blocks/{i}/{p}" for i in (0, 1)
                                      for p in ("attn/query", "attn/key", "attn/value", "attn/out", "mlp/0", "mlp/1"))}}


def build(name, svd=True, **svdify_kwargs):
  model = MODELS[name][0](rngs=rngs())
  model.eval()
  report = svdify_nnx.svdify(model, **svdify_kwargs) if svd else None
  return model, report


@nnx.jit
def forward(model, x):
  return model(x)


def rel_err(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("name", ["cnn", "lm"])
def test_full_rank_svd_model_equals_the_dense_model(name):
  x, _ = MODELS[name][1]()
  dense, _ = build(name, svd=False)
  model, report = build(name)
  assert set(report.converted) == CONVERTED[name]
  assert report.left == ({"grouped": "feature_group_count=4"} if name == "cnn" else {})
  assert rel_err(forward(model, x), forward(dense, x)) <= 1e-4
  assert isinstance(model.head if name == "cnn" else model.blocks[1].attn.out, nnx_layers.SVD_LAYERS)


def truncated(matrix, k):
  u, s, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
  return (u[:, :k] * s[:k]) @ vt[:k]


def low_rank_dense(dense, new_ranks):
  """The dense model with every pruned kernel replaced by NumPy's best rank-k approximation of its matrix view."""
  for path, k in new_ranks.items():
    layer = dense
    for key in path.split("/"):
      layer = layer[int(key)] if key.isdigit() else getattr(layer, key)
    if isinstance(layer, nnx.Embed):
      layer.embedding.set_value(jnp.asarray(truncated(layer.embedding[...], k), jnp.float32))
      continue
    kernel = np.asarray(layer.kernel[...])
    matrix = kernel.reshape(-1, kernel.shape[-1]) if isinstance(layer, nnx.Conv) else kernel
    if isinstance(layer, nnx.LinearGeneral):
      matrix = kernel.reshape(int(np.prod(layer.in_features)), -1)
    layer.kernel.set_value(jnp.asarray(truncated(matrix, k).reshape(kernel.shape), jnp.float32))


@pytest.mark.parametrize("name", ["cnn", "lm"])
def test_energy_prune_gives_the_best_low_rank_model(name):
  x, _ = MODELS[name][1]()
  model, report = build(name)
  full = svdify_nnx.ranks(model)
  small, new_ranks, prune_report = svdify_nnx.prune(nnx.split(model), Strategy("energy", energy=0.1))
  assert svdify_nnx.ranks(model) == full  # pure: the input is unchanged
  assert svdify_nnx.ranks(small) == new_ranks == prune_report.ranks
  assert sum(new_ranks.values()) < sum(full.values())
  for path, layer in svdify_nnx.svd_modules(small).items():
    chex.assert_shape([layer.U[...], layer.s[...], layer.V[...]], [(None, new_ranks[path]), (new_ranks[path],),
                                                                    (None, new_ranks[path])])
  reference, _ = build(name, svd=False)
  low_rank_dense(reference, new_ranks)
  assert rel_err(forward(small, x), forward(reference, x)) <= 1e-4


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.parametrize("name", ["cnn", "lm"])
def test_training_with_regularizers_lowers_cross_entropy(name):
  x, y = MODELS[name][1]()
  model, _ = build(name)
  model.train()
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3, sparsity_type="hoyer_square")
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, x, y):
    def loss_fn(model):
      ce = cross_entropy(model(x), y)
      penalty, terms = svdify_nnx.regularization(model, reg)
      return ce + penalty, (ce, terms)
    (_, (ce, terms)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return ce, terms

  history = [train_step(model, optimizer, x, y) for _ in range(6)]
  ces = [float(ce) for ce, _ in history]
  assert ces[-1] < ces[0], ces
  assert set(history[0][1]) == {"orth", "sparsity"}
  assert float(history[0][1]["orth"]) < 1e-6  # the factors of an SVD start orthonormal


RESTORE = """
import sys, numpy as np, jax
sys.path.insert(0, {repo!r})
from flax import nnx
from jaxsvd import checkpoint
from tests.nnx.svdify_test import MODELS, forward, rngs
for name, directory in {dirs!r}.items():
  cls, batch = MODELS[name]
  restored = checkpoint.restore(directory, model=lambda: cls(rngs=rngs(7)))  # the record says: an NNX model
  restored.model.eval()
  np.save(directory + ".npy", np.asarray(forward(restored.model, batch()[0])))
  print(name, restored.architecture.user["framework"], restored.architecture.model, restored.step)
"""


def test_checkpoint_restores_pruned_models_in_a_fresh_process(tmp_path):
  dirs, expected = {}, {}
  for name in MODELS:
    model, _ = build(name)
    small, _, _ = svdify_nnx.prune(model, Strategy("energy", energy=0.1))
    small.eval()
    dirs[name] = str(tmp_path / name)
    checkpoint_nnx.save(dirs[name], small, step=3, original_ranks=svdify_nnx.ranks(model))
    expected[name] = np.asarray(forward(small, MODELS[name][1]()[0]))
  proc = subprocess.run([sys.executable, "-c", RESTORE.format(repo=REPO, dirs=dirs)], cwd=REPO, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for name in MODELS:
    np.testing.assert_array_equal(np.load(dirs[name] + ".npy"), expected[name])
  assert "cnn nnx CNN 3" in proc.stdout and "lm nnx LM 3" in proc.stdout
  with pytest.raises(CheckpointError, match="user.module='CNN' but the constructor builds a LM"):
    checkpoint_nnx.restore(dirs["cnn"], lambda: LM(rngs=rngs()))
  with pytest.raises(CheckpointError, match="pass a function building the dense model"):
    checkpoint_nnx.restore(dirs["cnn"], CNN(rngs=rngs()))


class WeightStandardizedConv(nnx.Conv):
  def __call__(self, x):
    return super().__call__(x)


class Mixed(nnx.Module):
  """A tied (shared) Linear, layers in a plain dict and a tuple held as data, a subclass, a circular ConvTranspose,
  dilation."""

  def __init__(self, *, rngs: nnx.Rngs):
    shared = nnx.Linear(4, 4, rngs=rngs)
    self.first, self.again = shared, shared
    self.table = nnx.data({"a": nnx.Linear(4, 4, rngs=rngs), "b": nnx.LinearGeneral(4, (2, 2), rngs=rngs)})
    self.pair = nnx.data((nnx.Linear(4, 3, rngs=rngs), nnx.Linear(3, 4, rngs=rngs)))
    self.ws = WeightStandardizedConv(4, 4, (3, 3), rngs=rngs)
    self.up = nnx.ConvTranspose(4, 4, (2, 2), padding="CIRCULAR", rngs=rngs)
    self.atrous = nnx.Conv(4, 4, (3, 3), kernel_dilation=2, rngs=rngs)


def test_surgery_finds_layers_in_containers_keeps_ties_and_reports_what_stays_dense():
  model = Mixed(rngs=rngs())
  report = svdify_nnx.svdify(model, ranks={"table/a": 2}, skip_pattern=r"pair/1")
  assert set(report.converted) == {"again", "table/a", "table/b", "pair/0", "ws"}  # one path for the tied layer
  assert model.first is model.again and isinstance(model.first, nnx_layers.LinearSVD)
  assert isinstance(model.table["b"], nnx_layers.LinearGeneralSVD) and type(model.pair[1]) is nnx.Linear
  assert report.ranks["table/a"] == 2 and svdify_nnx.ranks(model)["table/a"] == 2
  assert report.left["pair/1"] == "in skip" and "subclass WeightStandardizedConv" in report.converted["ws"]
  assert "padding='CIRCULAR'" in report.left["up"] and "kernel_dilation=2" in report.left["atrous"]


def test_svdify_errors_are_clear():
  with pytest.raises(ValueError, match="no layer of Mixed was converted.*CIRCULAR"):
    svdify_nnx.svdify(Mixed(rngs=rngs()), skip=("again", "ws"), skip_pattern=r"table/.*",
                         skip_if=lambda path, layer: path.startswith("pair/"))
  with pytest.raises(ValueError, match=r"ranks name layers \['nope'\]"):
    svdify_nnx.svdify(Mixed(rngs=rngs()), ranks={"nope": 1})
  with pytest.raises(TypeError, match="use jaxsvd.linen.svdifylib.svdify"):
    svdify_nnx.svdify(nn.Dense(3))
  from jaxsvd.linen.svdifylib import svdify as linen_svdify
  with pytest.raises(TypeError, match="use jaxsvd.nnx.svdifylib.svdify"):
    linen_svdify(Mixed(rngs=rngs()))
  with pytest.raises(ValueError, match="no SVD layers"):
    svdify_nnx.prune(Mixed(rngs=rngs()), Strategy("energy"))


def test_nnx_svd_model_runs_inside_linen_through_to_linen():
  model, _ = build("lm")
  small, ranks, _ = svdify_nnx.prune(model, Strategy("energy", energy=0.1))
  tokens, _ = lm_batch()
  constructor = svdify_nnx.svdified(LM, ranks, only_ranked=True)

  class Outer(nn.Module):
    @nn.compact
    def __call__(self, tokens):
      return nn.log_softmax(nnx.bridge.to_linen(constructor, name="lm")(tokens))

  outer = Outer()
  variables = outer.init(jax.random.key(1, impl="rbg"), tokens)
  assert svdify_nnx.structure.ranks(nn.unbox(variables["params"])["lm"]) == ranks
  params = {"lm": nnx.state(small, nnx.Param).to_pure_dict()}
  out = jax.jit(outer.apply)({"params": params}, tokens)
  np.testing.assert_allclose(out, jax.nn.log_softmax(forward(small, tokens)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # tests/project/docs_examples_test.py runs the whole page by default; this runs the NNX part alone
def test_docs_nnx_example_runs():
  page = open(os.path.join(REPO, "docs", "own_model.md")).read()
  code = page.split("<!-- nnx-example -->")[1].split("<!-- /nnx-example -->")[0]
  exec(code.replace("```python", "").replace("```", ""), {"__name__": "docs"})  # noqa: S102 - our own docs


class LinenNet(nn.Module):
  """A linen model as a user writes it, to be used (in SVD form) inside NNX."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3))(x))
    return nn.Dense(4)(x.mean(axis=(1, 2)))


def test_linen_svd_model_runs_inside_nnx_through_to_nnx():
  from jaxsvd.linen.svdifylib import svdify as linen_svdify
  x, _ = cnn_batch()
  svd_model = linen_svdify(LinenNet())
  bridged = nnx.bridge.ToNNX(svd_model, rngs=rngs()).lazy_init(x)
  params = nnx.state(bridged, nnx.Param).to_pure_dict()
  assert set(svdify_nnx.ranks(bridged).values()) == {4, 8}  # Dense (8→4) and the conv, read from nnx.State
  np.testing.assert_allclose(forward(bridged, x), svd_model.apply({"params": params}, x), rtol=1e-5, atol=1e-6)


def test_a_stacked_layer_is_left_dense_with_its_reason():
  layer = nnx.Linear(3, 4, rngs=rngs())
  layer.kernel.set_value(jnp.zeros((2, 3, 4)))  # as nnx.vmap over the constructor leaves it
  assert svdify_nnx.unsupported(layer) == ["kernel shape (2, 3, 4) is not (3, 4) (stacked by nnx.vmap/nnx.scan?)"]


def test_partitioning_names_fewer_than_kernel_axes_leave_the_rest_replicated():
  """Regression: ``with_partitioning`` may name fewer axes than a kernel has (JAX replicates the rest);
  ``nnx.MultiHeadAttention``'s 3-D 'out' kernel under two names raised IndexError."""
  with jax.set_mesh(jax.make_mesh((1, 1), ("a", "b"))):
    model = nnx.MultiHeadAttention(2, 16, decode=False, use_bias=False, rngs=nnx.Rngs(0),
                                   kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("a", "b")))
    report = svdify_nnx.svdify(model)
  assert sorted(report.converted) == ["key", "out", "query", "value"]
  sharding = lambda p: p.get_metadata().get("out_sharding")  # noqa: E731
  assert (sharding(model.query.U), sharding(model.query.V)) == (("b", None), ("a", None))  # (16, 2·8) out, 16 in
  assert (sharding(model.out.U), sharding(model.out.V)) == ((None, None), ("a", None))  # features: not named
  assert sharding(model.out.s) == (None,)


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
def test_sharded_bias_and_kernel_convert_under_a_mesh(axis_type):
  """Regression: a host-made factor or bias could not be constrained to its sharding under an Auto-axes
  mesh (TypeError); the factors and the bias keep the dense layer's shardings, and the layer runs."""
  types = (jax.sharding.AxisType.Auto if axis_type == "auto" else jax.sharding.AxisType.Explicit,) * 2
  with jax.set_mesh(jax.make_mesh((1, 1), ("a", "b"), axis_types=types)):
    dense = nnx.Linear(4, 8, rngs=nnx.Rngs(0),
                       kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("a", "b")),
                       bias_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("b",)))
    x = jnp.arange(8.0).reshape(2, 4)
    expected = dense(x)
    layer = svdify_nnx.to_svd(dense, None)
    specs = [tuple(p[...].sharding.spec) for p in (layer.U, layer.s, layer.V, layer.bias)]
    out = layer(x)
  assert specs == [("b", None), (None,), ("a", None), ("b",)]
  chex.assert_trees_all_close(out, expected, atol=1e-5)
