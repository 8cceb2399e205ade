"""Two transformer models written the way public flax research code writes them (not test files), for the mesh tests:

  DecoderLM   linen, a pre-LayerNorm decoder-only LM (causal self-attention as ``nn.DenseGeneral`` q/k/v/out
              projections, a GELU MLP, tied-free output head), every kernel named with logical axes through
              ``nn.with_logical_partitioning`` as flax's lm1b example and MaxText do;
  ViT         NNX, a small vision transformer (patch embedding conv, a class token, ``nnx.MultiHeadAttention``
              blocks, a classifier), its kernels named with ``nnx.with_partitioning`` over logical names resolved
              by the rules in context (``nnx.logical_axis_rules(FSDP_RULES)``), as flax's NNX examples do.

``FSDP_RULES`` are the logical axis rules of a 2-D (data, model) mesh: parameters sharded over 'data' along their
embedding axis (FSDP) and over 'model' along heads / MLP / vocabulary (tensor parallelism); the SVD rank axis
('rank') is replicated.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

FSDP_RULES = (("batch", "data"), ("embed", "data"), ("mlp", "model"), ("heads", "model"), ("kv", None),
              ("vocab", "model"), ("length", None), ("rank", None), ("patch", None), ("channels", None),
              ("classes", None))


def _init(names):
  return nn.with_logical_partitioning(nn.initializers.lecun_normal(), names)


class DecoderBlock(nn.Module):
  """Pre-LN causal self-attention (``nn.MultiHeadDotProductAttention``, its kernels named on the flattened (in, out)
  matrix its ``DenseGeneral`` initializes, as in flax's lm1b example: ('embed', 'heads'), the heads × head_dim axis
  sharded in blocks of heads) + a GELU MLP."""
  heads: int
  mlp: int

  @nn.compact
  def __call__(self, x):
    h = nn.LayerNorm(use_bias=False)(x)
    x = x + nn.MultiHeadDotProductAttention(self.heads, use_bias=False, kernel_init=_init(("embed", "heads")),
                                            name="attention")(h, mask=nn.make_causal_mask(jnp.ones(x.shape[:2])))
    h = nn.LayerNorm(use_bias=False)(x)
    h = nn.gelu(nn.Dense(self.mlp, kernel_init=_init(("embed", "mlp")), name="wi")(h))
    return x + nn.Dense(x.shape[-1], kernel_init=_init(("mlp", "embed")), name="wo")(h)


class DecoderLM(nn.Module):
  """Token ids (batch, length) → next-token logits (batch, length, vocab)."""
  vocab: int = 128
  embed: int = 32
  heads: int = 4
  mlp: int = 64
  depth: int = 2

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab, self.embed, embedding_init=nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("vocab", "embed")), name="embed")(tokens)
    x = nn.with_logical_constraint(x, ("batch", "length", None))
    for i in range(self.depth):
      x = DecoderBlock(self.heads, self.mlp, name=f"block_{i}")(x)
    x = nn.LayerNorm(use_bias=False)(x)
    return nn.Dense(self.vocab, kernel_init=_init(("embed", "vocab")), name="head")(x)


def _nnx_init(names):
  return nnx.with_partitioning(nnx.initializers.lecun_normal(), names)


class ViTBlock(nnx.Module):
  """Pre-LN ``nnx.MultiHeadAttention`` (its q/k/v kernels (embed, heads, kv), out (heads, kv, embed)) + MLP."""

  def __init__(self, dim: int, heads: int, mlp: int, rngs: nnx.Rngs):
    self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, use_bias=False, rngs=rngs,
                                       kernel_init=_nnx_init(("embed", "heads", "kv")),
                                       out_kernel_init=_nnx_init(("heads", "kv", "embed")))
    self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
    self.wi = nnx.Linear(dim, mlp, kernel_init=_nnx_init(("embed", "mlp")), rngs=rngs)
    self.wo = nnx.Linear(mlp, dim, kernel_init=_nnx_init(("mlp", "embed")), rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.wo(nnx.gelu(self.wi(self.ln2(x))))


class ViT(nnx.Module):
  """Images (batch, 16, 16, 1) → class logits: 4×4 patches, a class token, ``depth`` blocks."""

  def __init__(self, rngs: nnx.Rngs, dim: int = 32, heads: int = 4, mlp: int = 64, depth: int = 2,
               classes: int = 10, patch: int = 4, image: int = 16):
    self.patches = nnx.Conv(1, dim, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs,
                            kernel_init=_nnx_init(("patch", "patch", "channels", "embed")))
    self.cls = nnx.Param(jnp.zeros((1, 1, dim)))
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, (image // patch) ** 2 + 1, dim)))
    self.blocks = nnx.List([ViTBlock(dim, heads, mlp, rngs) for _ in range(depth)])
    self.ln = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, classes, kernel_init=_nnx_init(("embed", "classes")), rngs=rngs)

  def __call__(self, images):
    x = self.patches(images)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (x.shape[0], 1, x.shape[-1])), x], axis=1) + self.pos[...]
    for block in self.blocks:
      x = block(x)
    return self.head(self.ln(x[:, 0]))
