"""Models as a user writes them in plain flax linen; jaxsvd knows nothing of them (svdify tests, docs/own_model.md)."""

from functools import partial

import flax.linen as nn
import jax.numpy as jnp

P = nn.with_logical_partitioning


class CNN(nn.Module):
  """Conv-BN-ReLU ×2, global pooling, a classifier."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    for features in (8, 16):
      x = nn.Conv(features, (3, 3), use_bias=False)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class ResidualBlock(nn.Module):
  features: int
  strides: int = 1
  groups: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    norm = partial(nn.BatchNorm, use_running_average=not train)
    y = nn.relu(norm()(nn.Conv(self.features, (3, 3), self.strides, use_bias=False)(x)))
    y = norm(scale_init=nn.initializers.zeros)(
        nn.Conv(self.features, (3, 3), feature_group_count=self.groups, use_bias=False)(y))
    if x.shape != y.shape:
      x = norm()(nn.Conv(self.features, (1, 1), self.strides, use_bias=False, name="proj")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A small ResNet; the second block's second conv is grouped (ResNeXt style)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(8, (3, 3), use_bias=False)(x)))
    x = ResidualBlock(8)(x, train)
    x = ResidualBlock(16, strides=2, groups=2)(x, train)
    return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


class EncoderBlock(nn.Module):
  heads: int
  mlp: int

  @nn.compact
  def __call__(self, x, _):
    attention_init = P(nn.initializers.xavier_uniform(), ("embed", "heads", "kv"))
    y = nn.MultiHeadDotProductAttention(self.heads, kernel_init=attention_init)(nn.LayerNorm()(x))
    x = x + y
    y = nn.Dense(self.mlp, kernel_init=P(nn.initializers.xavier_uniform(), ("embed", "mlp")))(nn.LayerNorm()(x))
    y = nn.Dense(x.shape[-1], kernel_init=P(nn.initializers.xavier_uniform(), ("mlp", "embed")))(nn.gelu(y))
    return x + y, None


class ViT(nn.Module):
  """Patch embedding, a class token, learned positions, ``depth`` blocks under ``nn.scan``, a linear head."""
  num_classes: int = 10
  patch: int = 4
  width: int = 16
  depth: int = 2
  heads: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.width, (self.patch, self.patch), self.patch, padding="VALID", name="patches",
                kernel_init=P(nn.initializers.lecun_normal(), (None, None, None, "embed")))(x)
    x = x.reshape(x.shape[0], -1, self.width)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width))
    x = jnp.concatenate([jnp.tile(cls, (x.shape[0], 1, 1)), x], axis=1)
    x = x + self.param("pos", nn.initializers.normal(0.02), (1, x.shape[1], self.width))
    blocks = nn.scan(EncoderBlock, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.depth,
                     metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = blocks(self.heads, 2 * self.width, name="encoder")(x, None)
    return nn.Dense(self.num_classes, name="head")(nn.LayerNorm()(x[:, 0]))


class DecoderBlock(nn.Module):
  heads: int

  @nn.compact
  def __call__(self, x):
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
    x = x + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(x), mask=mask)
    y = nn.Dense(2 * x.shape[-1])(nn.LayerNorm()(x))
    return x + nn.Dense(x.shape[-1])(nn.gelu(y))


class TransformerLM(nn.Module):
  """A decoder-only language model; the output logits use the input embedding (``Embed.attend``)."""
  vocab: int = 32
  width: int = 16
  depth: int = 2
  heads: int = 2
  max_len: int = 16

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    embed = nn.Embed(self.vocab, self.width)
    x = embed(tokens) + self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.width))[:tokens.shape[1]]
    for _ in range(self.depth):
      x = DecoderBlock(self.heads)(x)
    return embed.attend(nn.LayerNorm()(x))
