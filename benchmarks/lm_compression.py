"""Data-aware SVD compression of a small byte-level transformer LM: test perplexity per decomposition method.

  python -m benchmarks.lm_compression            # a few minutes on 2 CPU cores
  python -m benchmarks.lm_compression --quick    # smoke test (numbers meaningless)

Data: the ``.py`` files of this Python's standard library (``sysconfig.get_paths()['stdlib']``), sorted by path;
every 10th file is a test file (a fixed split by file), the rest train; bytes are the tokens (vocabulary 256).
Model: a decoder-only pre-LN transformer (2 blocks, d = 128, 4 heads, MLP 4d, context 128; linen ``nn.Dense``
layers for q, k, v, o and the MLP), trained with Adam (seeded). Then ``jaxsvd.linen.compress`` with
``params_reduction=2``: the blocks' linear layers (embedding and output head kept dense) at ≤ 50 % of their params,
with 'plain', 'activation' (α = 0.5) and 'whitened' decomposition on 64 training windows of calibration.
Prints one table row per method: test perplexity (exp of the mean next-byte cross-entropy on fixed test windows).
"""

from __future__ import annotations

import argparse
import glob
import os
import sysconfig
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsvd.linen import compress


class Block(nn.Module):
  """Pre-LN causal self-attention + MLP."""
  d: int
  heads: int

  @nn.compact
  def __call__(self, x):
    b, t, d = x.shape
    h = nn.LayerNorm()(x)
    q, k, v = (nn.Dense(d, name=n)(h).reshape(b, t, self.heads, d // self.heads) for n in ("q", "k", "v"))
    att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // self.heads)
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    y = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(att, -1), v).reshape(b, t, d)
    x = x + nn.Dense(d, name="o")(y)
    h = nn.LayerNorm()(x)
    return x + nn.Dense(d, name="mlp_out")(nn.gelu(nn.Dense(4 * d, name="mlp_in")(h)))


class LM(nn.Module):
  """Byte-level decoder-only transformer."""
  d: int = 128
  heads: int = 4
  layers: int = 2
  context: int = 128

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(256, self.d, name="embed")(tokens)
    x = x + self.param("pos", nn.initializers.normal(0.02), (self.context, self.d))[:tokens.shape[1]]
    for i in range(self.layers):
      x = Block(self.d, self.heads, name=f"block{i}")(x)
    return nn.Dense(256, name="head")(nn.LayerNorm()(x))


def corpus(limit_files: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(train bytes, test bytes): the stdlib's .py files, every 10th (sorted by path) to test."""
  files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True))
  files = [f for f in files if "site-packages" not in f][:limit_files]
  parts = {0: [], 1: []}
  for i, f in enumerate(files):
    with open(f, "rb") as fh:
      parts[int(i % 10 == 0)].append(np.frombuffer(fh.read(), np.uint8))
  return np.concatenate(parts[0]), np.concatenate(parts[1])


def windows(data: np.ndarray, n: int, context: int, rng: np.random.Generator) -> np.ndarray:
  starts = rng.integers(0, len(data) - context - 1, n)
  return np.stack([data[s:s + context + 1] for s in starts]).astype(np.int32)


def loss_fn(model, params, batch):
  logits = model.apply({"params": params}, batch[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()


def train(model, train_data, steps: int, batch: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  params = model.init(jax.random.key(seed), jnp.zeros((1, model.context), jnp.int32))["params"]
  tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 3e-3, max(steps // 10, 1), steps), weight_decay=0.01)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, batch):
    loss, grads = jax.value_and_grad(lambda p: loss_fn(model, p, batch))(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  for _ in range(steps):
    params, opt, loss = step(params, opt, jnp.asarray(windows(train_data, batch, model.context, rng)))
  return {"params": params}, float(loss)


def perplexity(model, variables, test_windows: np.ndarray, batch: int = 64) -> float:
  evaluate = jax.jit(lambda v, b: model.apply(v, b[:, :-1]))
  total = 0.0
  for i in range(0, len(test_windows), batch):
    b = jnp.asarray(test_windows[i:i + batch])
    total += float(optax.softmax_cross_entropy_with_integer_labels(evaluate(variables, b), b[:, 1:]).sum())
  return float(np.exp(total / (len(test_windows) * (test_windows.shape[1] - 1))))


def main():
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--steps", type=int, default=600)
  p.add_argument("--reduction", type=float, default=2.0)
  args = p.parse_args()
  quick = args.quick
  model = LM(d=32, heads=2, layers=1, context=32) if quick else LM()
  train_data, test_data = corpus(40 if quick else None)
  start = time.perf_counter()
  variables, loss = train(model, train_data, 20 if quick else args.steps, 8 if quick else 32)
  rng = np.random.default_rng(1)
  test_windows = windows(test_data, 32 if quick else 512, model.context, rng)
  calib = [jnp.asarray(windows(train_data, 16, model.context, rng)[:, :-1]) for _ in range(1 if quick else 4)]
  print(f"trained {time.perf_counter() - start:.0f}s on {len(train_data):,} train / {len(test_data):,} test bytes, "
        f"final train loss {loss:.3f}")
  dense = perplexity(model, variables, test_windows)
  print(f"| method | test perplexity | increase | linear params kept |\n|---|---|---|---|\n| dense | {dense:.3f} | | |")
  results = {}
  for method in ("plain", "activation", "whitened"):
    out = compress.compress(model, variables, calib, method=method, params_reduction=args.reduction,
                            svdify_options={"skip_pattern": "embed|head"})
    results[method] = perplexity(out.model, out.variables, test_windows)
    kept = out.cost / (out.target * args.reduction)
    print(f"| {method} | {results[method]:.3f} | {results[method] - dense:+.3f} | {kept:.1%} |")
  ratio = (results["whitened"] - dense) / max(results["plain"] - dense, 1e-12)
  print(f"KEY lm_compression whitened/plain perplexity increase {ratio:.3f}")


if __name__ == "__main__":
  main()
