"""Converted NNX layers keep the replaced layer's public surface (``jaxsvd.nnx.surface``).

The models are written as flax NNX users write transformers (the Gemma example's attention reads its head size
from ``attn_vec_einsum.kernel.shape``; a scaled ``nnx.Embed`` subclass ties the logits through ``attend``). The
references are flax's own dense layers: the dense kernels before conversion, and a dense model given the views.
"""

import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.nnx import svdifylib as svdify_nnx
from jaxsvd.pruning import Strategy
from jaxsvd.training.losses import RegularizerConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB, DIM, HEADS, HEAD_DIM, SEQ = 32, 16, 2, 8, 12


class Attention(nnx.Module):
  """Causal multi-head attention with Einsum projections; head count and size are read from the kernels."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.q_einsum = nnx.Einsum("BTD,DNH->BTNH", (DIM, HEADS, HEAD_DIM), rngs=rngs)
    self.kv_einsum = nnx.Einsum("BSD,CDKH->CBSKH", (2, DIM, HEADS, HEAD_DIM), rngs=rngs)
    self.attn_vec_einsum = nnx.Einsum("BTNH,NHD->BTD", (HEADS, HEAD_DIM, DIM), rngs=rngs)

  @property
  def head_dim(self) -> int:
    return self.attn_vec_einsum.kernel.shape[1]

  @property
  def num_heads(self) -> int:
    return self.q_einsum.kernel.shape[1]

  def __call__(self, x):
    q = self.q_einsum(x) * self.head_dim ** -0.5
    k, v = self.kv_einsum(x)
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k)
    causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
    probs = jax.nn.softmax(jnp.where(causal, logits, -1e9), axis=-1)
    assert probs.shape[1] == self.num_heads
    return self.attn_vec_einsum(jnp.einsum("BNTS,BSNH->BTNH", probs, v))


class ScaledEmbed(nnx.Embed):
  """Gemma's embedder: the lookup scaled by √features (a subclass: converted in place, its methods kept)."""

  def __call__(self, tokens):
    return super().__call__(tokens) * jnp.sqrt(self.features).astype(jnp.float32)


class TiedLM(nnx.Module):
  """A pre-norm decoder block between a scaled embedding and logits tied to it (``attend``)."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.embed = ScaledEmbed(VOCAB, DIM, rngs=rngs)
    self.attn_norm, self.mlp_norm, self.final_norm = (nnx.RMSNorm(DIM, rngs=rngs) for _ in range(3))
    self.attn = Attention(rngs=rngs)
    self.up, self.down = nnx.Linear(DIM, 4 * DIM, rngs=rngs), nnx.Linear(4 * DIM, DIM, rngs=rngs)

  def __call__(self, tokens):
    assert self.embed.embedding.shape == (VOCAB, DIM)
    x = self.embed(tokens)
    x = x + self.attn(self.attn_norm(x))
    x = x + self.down(nnx.gelu(self.up(self.mlp_norm(x))))
    return self.embed.attend(self.final_norm(x))


@functools.cache
def _built() -> TiedLM:
  return TiedLM(rngs=nnx.Rngs(0))


def fresh_model() -> TiedLM:
  """A dense ``TiedLM`` (one eager init per process; each caller gets its own copy)."""
  return nnx.clone(_built())


@nnx.jit
def forward(model, x):
  return model(x)


def tokens(seed: int = 0, batch: int = 4):
  return jax.random.randint(jax.random.key(seed), (batch, SEQ + 1), 0, VOCAB)


KERNELS = {"embed": "embedding", "attn/q_einsum": "kernel", "attn/kv_einsum": "kernel",
           "attn/attn_vec_einsum": "kernel", "up": "kernel", "down": "kernel"}


def layer(model, path: str):
  for name in path.split("/"):
    model = getattr(model, name)
  return model


def dense_kernels(model) -> dict[str, np.ndarray]:
  return {path: np.asarray(getattr(layer(model, path), name)[...]) for path, name in KERNELS.items()}


def dense_twin(model) -> TiedLM:
  """A dense ``TiedLM`` (flax's own layers) whose kernels are ``model``'s kernel views and other params its own."""
  twin = fresh_model()
  for path, name in KERNELS.items():
    getattr(layer(twin, path), name)[...] = getattr(layer(model, path), name)[...]
  for path in ("up", "down"):
    layer(twin, path).bias[...] = layer(model, path).bias[...]
  for norm in ("attn_norm", "mlp_norm", "final_norm"):
    getattr(twin, norm).scale[...] = getattr(model, norm).scale[...]
  return twin


def test_kernel_views_equal_the_dense_kernels_at_full_rank_and_writes_raise():
  model = fresh_model()
  dense, x = dense_kernels(model), tokens()[:, :-1]
  expected = np.asarray(forward(model, x))
  report = svdify_nnx.svdify(model)
  assert set(report.converted) == set(KERNELS), report
  for path, name in KERNELS.items():
    view = getattr(layer(model, path), name)
    assert view.shape == dense[path].shape and view.dtype == jnp.float32, path
    np.testing.assert_allclose(np.asarray(view[...]), dense[path], atol=2e-6, err_msg=path)
    np.testing.assert_allclose(np.asarray(view.get_value()), dense[path], atol=2e-6, err_msg=path)
  assert (model.attn.head_dim, model.attn.num_heads) == (HEAD_DIM, HEADS)
  np.testing.assert_allclose(np.asarray(forward(model, x)), expected, atol=2e-5)
  leaves = {"/".join(map(str, k)) for k, _ in nnx.to_flat_state(nnx.state(model))}
  assert not any(k.endswith(("/kernel", "/embedding")) for k in leaves), leaves  # computed on read, never stored
  q = model.attn.q_einsum
  assert (q.einsum_str, q.kernel_shape, q.bias_shape) == ("BTD,DNH->BTNH", (DIM, HEADS, HEAD_DIM), None)
  assert model.up.precision is None and model.up.dot_general is jax.lax.dot_general
  with pytest.raises(AttributeError, match=r"^EinsumSVD.kernel is read-only: .* assign U, s, V"):
    q.kernel = jnp.zeros((DIM, HEADS, HEAD_DIM))
  with pytest.raises(AttributeError, match="LinearSVD.kernel is read-only"):
    model.up.kernel[...] = 0.0
  with pytest.raises(AttributeError, match="ScaledEmbedSVD.embedding is read-only"):
    del model.embed.embedding


@pytest.mark.parametrize("make, name", [
    (lambda r: nnx.Conv(3, 5, 3, rngs=r), "kernel"),
    (lambda r: nnx.Conv(3, 5, (3, 2), rngs=r), "kernel"),
    (lambda r: nnx.LinearGeneral((2, 3), (4, 5), axis=(-2, -1), rngs=r), "kernel"),
    (lambda r: nnx.ConvTranspose(3, 4, (3, 3), transpose_kernel=True, rngs=r), "kernel"),
    (lambda r: nnx.Embed(11, 6, rngs=r), "embedding"),
])
def test_every_kind_keeps_its_kernel_shape_and_values(make, name):
  dense = make(nnx.Rngs(0))
  kernel, attrs = np.asarray(getattr(dense, name)[...]), {k: v for k, v in vars(dense).items() if k[0] != "_"}
  converted = svdify_nnx.to_svd(dense, rank=None)
  view = getattr(converted, name)
  chex.assert_shape(view[...], kernel.shape)
  np.testing.assert_allclose(np.asarray(view[...]), kernel, atol=2e-6)
  for key, value in attrs.items():
    if not isinstance(value, nnx.Variable):
      assert hasattr(converted, key), key
  if hasattr(dense, "kernel_shape"):
    assert tuple(converted.kernel_shape) == tuple(dense.kernel_shape)


def test_a_pruned_view_is_the_kernel_the_layer_applies():
  """After pruning, a dense model given the views computes what the SVD model computes (flax's layers as the
  reference), and the views keep the replaced kernels' shapes."""
  model = fresh_model()
  shapes = {path: v.shape for path, v in dense_kernels(model).items()}
  svdify_nnx.svdify(model)
  small, ranks, _ = svdify_nnx.prune(model, Strategy("energy", energy=0.05))
  assert sum(ranks.values()) < sum(svdify_nnx.ranks(model).values())
  assert {path: getattr(layer(small, path), name).shape for path, name in KERNELS.items()} == shapes
  x = tokens(1)[:, :-1]
  np.testing.assert_allclose(np.asarray(forward(small, x)), np.asarray(forward(dense_twin(small), x)), atol=2e-5)


RESTORE = """
import sys, numpy as np, jax
sys.path.insert(0, {repo!r})
from flax import nnx
from jaxsvd.checkpoint import nnx as checkpoint_nnx
from tests.nnx.surface_test import TiedLM, forward, tokens
restored = checkpoint_nnx.restore({directory!r}, lambda: TiedLM(rngs=nnx.Rngs(5)))
model = restored.model
np.save({directory!r} + ".npy", np.asarray(forward(model, tokens(2)[:, :-1])))
print("heads", model.attn.num_heads, "head_dim", model.attn.head_dim, "step", restored.step)
"""


def cross_entropy(model, batch):
  logits = model(batch[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def test_attention_and_tied_lm_train_prune_and_restore_in_a_fresh_process(tmp_path):
  model = fresh_model()
  svdify_nnx.svdify(model)
  reg = RegularizerConfig(orthogonality=1.0, sparsity=1e-3, sparsity_type="hoyer")
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch):
    def loss_fn(model):
      ce = cross_entropy(model, batch)
      penalty, _ = svdify_nnx.regularization(model, reg)
      return ce + penalty, ce
    (_, ce), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return ce

  batch = tokens(3, batch=8)
  ces = [float(train_step(model, optimizer, batch)) for _ in range(8)]
  assert ces[-1] < ces[0], ces
  small, ranks, _ = svdify_nnx.prune(model, Strategy("energy", energy=0.05))
  directory = str(tmp_path / "lm")
  checkpoint_nnx.save(directory, small, step=8, original_ranks=svdify_nnx.ranks(model))
  expected = np.asarray(forward(small, tokens(2)[:, :-1]))
  proc = subprocess.run([sys.executable, "-c", RESTORE.format(repo=REPO, directory=directory)], cwd=REPO,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"heads {HEADS} head_dim {HEAD_DIM} step 8" in proc.stdout
  np.testing.assert_array_equal(np.load(directory + ".npy"), expected)
