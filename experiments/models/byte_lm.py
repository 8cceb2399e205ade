"""A decoder-only byte-level transformer written as a flax linen user writes it, and what a run needs around it.

  ByteLM        pre-norm blocks: LayerNorm → causal ``nn.MultiHeadDotProductAttention`` (``nn.DenseGeneral`` q, k, v
                and out projections) → residual; LayerNorm → Dense d_ff → GELU → Dense d_model → residual; a final
                LayerNorm; logits by ``nn.Embed.attend`` (tied) or a Dense 'head' (untied). Learned positions.
  record        the architecture record of a run's model: a user record (``user``: framework 'linen', module
                'ByteLM', the ``svdify`` settings) whose ``options`` hold every size, so a checkpoint restores in a
                fresh process from its directory alone (``build``)
  build         the linen model of such a record: ``ByteLM(**options)``, ``svdify``-ed at the record's ranks
  restore       (record, variables) of a run's latest checkpoint
  generate      a continuation of a prompt: greedy, or sampled at a temperature with a seed

The model takes byte ids in any numeric dtype (the run initializes models with float zeros) and casts them to int32.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec

SIZES = ("d_model", "heads", "layers", "d_ff", "context", "vocab", "tied")  # the record's options


class Block(nn.Module):
  """One pre-norm transformer block: causal self-attention and a GELU MLP, each with a residual."""
  heads: int
  d_ff: int

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    h = nn.LayerNorm(name="norm1")(x)
    mask = nn.make_causal_mask(jnp.ones(x.shape[:2], jnp.int32))
    x = x + nn.MultiHeadDotProductAttention(self.heads, name="attn")(h, h, mask=mask)
    h = nn.LayerNorm(name="norm2")(x)
    return x + nn.Dense(d, name="mlp_out")(nn.gelu(nn.Dense(self.d_ff, name="mlp_in")(h)))


class ByteLM(nn.Module):
  """A decoder-only transformer over bytes: (batch, T ≤ context) ids → (batch, T, vocab) next-byte logits."""
  d_model: int = 128
  heads: int = 4
  layers: int = 2
  d_ff: int = 512
  context: int = 128
  vocab: int = 256
  tied: bool = True

  @nn.compact
  def __call__(self, tokens, train: bool = False):
    del train  # no dropout, no batch statistics
    tokens = jnp.asarray(tokens).astype(jnp.int32)
    embed = nn.Embed(self.vocab, self.d_model, name="embed")
    positions = self.param("pos", nn.initializers.normal(0.02), (self.context, self.d_model))
    x = embed(tokens) + positions[:tokens.shape[-1]]
    for i in range(self.layers):
      x = Block(self.heads, self.d_ff, name=f"block{i}")(x)
    x = nn.LayerNorm(name="norm")(x)
    return embed.attend(x) if self.tied else nn.Dense(self.vocab, name="head")(x)


def skipped_layers(svd: SVDSpec, tied: bool) -> list[str]:
  """The layers kept dense: the embedding with ``svd.dense_first``, the output layer (the embedding when tied, else
  'head') with ``svd.dense_last``.

  Args:
    svd: the run's SVD spec.
    tied: whether the embedding is also the output layer.

  Returns:
    The layer paths, sorted.
  """
  skip = {"embed"} if svd.dense_first else set()
  if svd.dense_last:
    skip.add("embed" if tied else "head")
  return sorted(skip)


def record(sizes: dict, svd: SVDSpec | None) -> Architecture:
  """The record of a ``ByteLM`` of ``sizes`` (ranks empty: the run reads them from the initialized params).

  Args:
    sizes: every field of ``SIZES``.
    svd: the SVD spec (None: dense).

  Returns:
    The ``Architecture``: model 'ByteLM', ``num_classes`` the vocabulary, input (context,) int32, ``options`` the
    sizes, ``user`` the linen user record with the ``svdify`` settings of ``svd``.
  """
  settings = None if svd is None else {
      "decomposition": svd.decomposition, "mode": svd.mode, "skip": skipped_layers(svd, sizes["tied"]),
      "skip_pattern": None, "sigma": svd.sigma, "init": svd.init}
  user = {"framework": "linen", "module": ByteLM.__qualname__, "svdify": settings, "call_kwargs": {},
          "input_dtype": "int32", "stack_shapes": {}}
  return Architecture(ByteLM.__qualname__, int(sizes["vocab"]), (int(sizes["context"]),), svd,
                      options={k: sizes[k] for k in SIZES}, user=user)


def build(architecture: Architecture, bn_axis_name: str | None = None):
  """The linen model of a ``record``: ``ByteLM(**options)``, through ``svdify`` at the record's ranks when it has
  SVD layers (its dense twin, ``architecture.dense()``, is the plain ``ByteLM``).

  Args:
    architecture: a ``record`` (possibly pruned: its ranks).
    bn_axis_name: unused (the model has no batch statistics).

  Returns:
    The ``ByteLM`` or its ``SVDModel``.
  """
  del bn_axis_name
  if architecture.svd is None and architecture.user["svdify"] is not None:
    architecture = architecture.replace(user={**architecture.user, "svdify": None})
  return architecture.build_user_model(ByteLM(**architecture.options))


def restore(workdir: str) -> tuple[Architecture, dict]:
  """The record and variables of a run's latest checkpoint (``workdir/checkpoints``), in this process.

  Args:
    workdir: a language-model run's directory.

  Returns:
    (record, variables).

  Raises:
    ValueError: one line if ``workdir`` holds no language-model checkpoint.
  """
  directory, step = checkpoint.resolve(os.path.join(workdir, "checkpoints"))
  architecture = checkpoint.read_architecture(directory, step)
  if (architecture.user or {}).get("module") != ByteLM.__qualname__:
    raise ValueError(f"--workdir={workdir} holds a {architecture.model} run, not a byte language model's")
  variables = checkpoint.restore_variables(directory, step, build(architecture), architecture.input_shape, "int32")
  return architecture, variables


def encode_prompt(prompt: str, context: int) -> np.ndarray:
  """The prompt's UTF-8 bytes, checked.

  Args:
    prompt: the text to continue.
    context: the model's context length.

  Returns:
    The bytes as int32 ids.

  Raises:
    ValueError: one line naming ``--prompt`` if it is empty, not encodable as UTF-8, holds a NUL byte (the
      corpus's file separator) or is longer than the context.
  """
  if not prompt:
    raise ValueError("--prompt is empty: give the text to continue, e.g. --prompt='def '")
  try:
    data = prompt.encode("utf-8")
  except UnicodeEncodeError as err:
    raise ValueError(f"--prompt is not valid UTF-8 text ({err.reason} at character {err.start})") from None
  if b"\0" in data:
    raise ValueError("--prompt holds a NUL byte (the separator between the corpus's files)")
  if len(data) > context:
    raise ValueError(f"--prompt is {len(data)} bytes, more than the model's context of {context} bytes")
  return np.frombuffer(data, np.uint8).astype(np.int32)


def generate(architecture: Architecture, variables: dict, prompt: np.ndarray, max_bytes: int,
             temperature: float = 0.0, seed: int = 0) -> bytes:
  """``max_bytes`` bytes after ``prompt``: the most likely next byte each time (``temperature`` 0), or one drawn
  from softmax(logits / temperature) with ``jax.random.key(seed)``. Beyond the context the window slides (the
  last ``context`` bytes); the model runs on a fixed (1, context) window (one compile), read at the last byte.

  Args:
    architecture: the model's record.
    variables: its variables.
    prompt: the prompt's byte ids (``encode_prompt``).
    max_bytes: how many bytes to generate.
    temperature: 0 for greedy, else the sampling temperature (> 0).
    seed: the sampling seed.

  Returns:
    The generated bytes (not necessarily valid UTF-8).
  """
  context = int(architecture.input_shape[0])
  model = build(architecture)

  @jax.jit
  def next_byte(window, last, key):
    logits = model.apply(variables, window[None])[0, last].astype(jnp.float32)
    if temperature == 0.0:
      return jnp.argmax(logits)
    return jax.random.categorical(key, logits / temperature)

  text, key = [int(b) for b in prompt], jax.random.key(seed)
  for _ in range(max_bytes):
    tail = text[-context:]
    window = np.zeros(context, np.int32)
    window[:len(tail)] = tail
    key, sub = jax.random.split(key)
    text.append(int(next_byte(window, len(tail) - 1, sub)))
  return bytes(text[len(prompt):])


__all__ = ["SIZES", "Block", "ByteLM", "skipped_layers", "record", "build", "restore", "encode_prompt", "generate"]
