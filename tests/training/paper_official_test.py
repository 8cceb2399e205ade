"""jaxsvd in sigma='abs' against an independent re-derivation of the official PyTorch code's math
(yanghr/SVD_Prune_EDLCV, CNN/cifar10/resnet.py, Regularization.py, cifar10_resnet20.py), and the official
energy-pruning loop against ``Strategy(energy_rule=...)``.

The reference below is written from the official code in plain jnp (NCHW / OIHW, torch's N, C, Sigma layouts,
√|σ| folded into both factors, BatchNorm in training mode, CE + λo·Σ orthogology_loss + λs·Σ (Hoyer − 1), torch Adam);
it does not call jaxsvd's layers, regularizers or optimizers.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxsvd.models import SVDSpec, build_model
from jaxsvd.pruning import Strategy
from jaxsvd.pruning.rank import keep_indices
from jaxsvd.training import optim
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.train_state import TrainState, train_step

LR, LAM_O, LAM_S, STEPS = 1e-2, 1.0, 0.1, 3
BLOCKS = [("stage1_block0", 1), ("stage2_block0", 2), ("stage3_block0", 2)]  # ResNet-8: one block per stage


# ---- ours (jaxsvd params) -> the official tensors ----

def to_official(node, kernel_shape, decomposition):
  """{N, C, Sigma} of the official SVD_Conv2d from a jaxsvd {U, s, V} of an HWIO kernel (kh, kw, c, n)."""
  kh, kw, c, n = kernel_shape
  U, s, V = node["U"], node["s"], node["V"]
  r = s.shape[0]
  if decomposition == "channel":  # N (n, r); C (r, c·kh·kw) with columns (c, h, w); ours V rows (h, w, c)
    return {"N": U, "C": V.reshape(kh, kw, c, r).transpose(3, 2, 0, 1).reshape(r, c * kh * kw), "Sigma": s}
  # spatial: N (c·kh, r) rows (c, h) — ours V rows (h, c); C (r, n·kw) columns (n, w) — ours U rows (w, n)
  return {"N": V.reshape(kh, c, r).transpose(1, 0, 2).reshape(c * kh, r),
          "C": U.reshape(kw, n, r).transpose(2, 1, 0).reshape(r, n * kw), "Sigma": s}


def conv_shapes(width_in=3):
  """{layer: (kh, kw, c, n)} of the official CIFAR ResNet-8 (option-B downsample)."""
  shapes, c = {"stem": (3, 3, width_in, 16)}, 16
  for (block, _), n in zip(BLOCKS, (16, 32, 64)):
    shapes.update({f"{block}/conv1": (3, 3, c, n), f"{block}/conv2": (3, 3, n, n)})
    if c != n:
      shapes[f"{block}/proj"] = (1, 1, c, n)
    c = n
  return shapes


def official_params(params, decomposition):
  flat = {"/".join(k): v for k, v in _flatten(params)}
  out = {}
  for layer, shape in conv_shapes().items():
    node = {name: flat[f"{layer}/{name}"] for name in ("U", "s", "V")}
    out[layer] = to_official(node, shape, decomposition)
  for bn in ["stem_bn"] + [f"{b}/{x}" for b, _ in BLOCKS for x in ("bn1", "bn2", "proj_bn")]:
    if f"{bn}/scale" in flat:
      out[bn] = {"weight": flat[f"{bn}/scale"], "bias": flat[f"{bn}/bias"]}
  out["fc"] = {"weight": flat["classifier/kernel"].T, "bias": flat["classifier/bias"]}
  return out


def _node(params, path):
  for key in path.split("/"):
    params = params[key]
  return params


def _flatten(tree, prefix=()):
  for k, v in tree.items():
    yield from (_flatten(v, prefix + (k,)) if isinstance(v, dict) else [(prefix + (k,), v)])


# ---- the official forward and loss, from the PyTorch code ----

def torch_conv(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, stride, [(p, p) for p in padding], dimension_numbers=("NCHW", "OIHW", "NCHW"))


def svd_conv2d(x, p, shape, stride, padding, decomposition):
  """SVD_Conv2d.forward in training mode."""
  kh, _, c, n = shape
  sigma = jnp.abs(p["Sigma"])
  r = sigma.shape[0]
  C = jnp.diag(jnp.sqrt(sigma)) @ p["C"]
  N = p["N"] @ jnp.diag(jnp.sqrt(sigma))
  if decomposition == "channel":
    y = torch_conv(x, C.reshape(r, c, kh, kh), (stride, stride), (padding, padding))
    return torch_conv(y, N.reshape(n, r, 1, 1), (1, 1), (0, 0))
  Nw = N.reshape(c, 1, kh, r).transpose(3, 0, 2, 1)
  Cw = C.reshape(r, n, kh, 1).transpose(1, 0, 3, 2)
  y = torch_conv(x, Nw, (stride, 1), (padding, 0))
  return torch_conv(y, Cw, (1, stride), (0, padding))


def batch_norm(x, p):
  mean = x.mean(axis=(0, 2, 3), keepdims=True)
  var = x.var(axis=(0, 2, 3), keepdims=True)  # torch normalizes with the biased variance in training
  return (x - mean) / jnp.sqrt(var + 1e-5) * p["weight"][None, :, None, None] + p["bias"][None, :, None, None]


def official_forward(P, x_nchw, decomposition):
  shapes = conv_shapes()
  conv = lambda name, x, stride, pad: svd_conv2d(x, P[name], shapes[name], stride, pad, decomposition)  # noqa: E731
  x = jax.nn.relu(batch_norm(conv("stem", x_nchw, 1, 1), P["stem_bn"]))
  for block, stride in BLOCKS:
    out = jax.nn.relu(batch_norm(conv(f"{block}/conv1", x, stride, 1), P[f"{block}/bn1"]))
    out = batch_norm(conv(f"{block}/conv2", out, 1, 1), P[f"{block}/bn2"])
    residual = batch_norm(conv(f"{block}/proj", x, stride, 0), P[f"{block}/proj_bn"]) if f"{block}/proj" in P else x
    x = jax.nn.relu(out + residual)
  x = x.mean(axis=(2, 3))
  return x @ P["fc"]["weight"].T + P["fc"]["bias"]


def orthogology_loss(mat):
  mulmat = mat @ mat.T if mat.shape[0] <= mat.shape[1] else mat.T @ mat
  return jnp.sum((mulmat - jnp.eye(mulmat.shape[0])) ** 2) / (mulmat.shape[0] * mulmat.shape[1])


def official_loss(P, x_nchw, labels, decomposition):
  logits = official_forward(P, x_nchw, decomposition)
  ce = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels])
  svd = [P[name] for name in conv_shapes()]
  perp = sum(orthogology_loss(p["N"]) + orthogology_loss(p["C"]) for p in svd)
  reg = sum(jnp.sum(jnp.abs(p["Sigma"])) / jnp.sqrt(jnp.sum(p["Sigma"] ** 2)) - 1 for p in svd)  # Hoyer
  return ce + reg * LAM_S + perp * LAM_O


def torch_adam(P, grads, m, v, t, lr=LR, b1=0.9, b2=0.999, eps=1e-8):
  m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
  v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
  step = lambda p, m, v: p - lr * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps)  # noqa: E731
  return jax.tree.map(step, P, m, v), m, v


@pytest.mark.parametrize("decomposition", [pytest.param("channel", marks=pytest.mark.slow), "spatial"])
def test_abs_sigma_training_matches_the_official_math_in_float64(decomposition):
  with jax.enable_x64(True):
    spec = SVDSpec(decomposition, "auto", sigma="abs", init="official", dense_first=False, dense_last=True)
    model = build_model("resnet8", 10, spec, options={"shortcut": "B"})
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 3), jnp.float64)
    labels = jnp.arange(6) % 10
    variables = jax.jit(model.init)(jax.random.key(0), x.astype(jnp.float32))
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    tiny = jnp.array([1e-6, -1e-6, 2e-6, -2e-6])  # σ ≈ 0 of both signs: Adam's first step (≈ lr) crosses 0
    for layer in ("stem", "stage1_block0/conv1"):
      node = _node(variables["params"], layer)
      node["s"] = node["s"].at[:4].set(tiny)
    signs = jnp.sign(jnp.concatenate([_node(variables["params"], n)["s"] for n in conv_shapes()]))
    cfg = {"optimizer": "adam", "learning_rate": LR, "schedule": "constant"}
    state = TrainState.create(model.apply, variables, optim.make_optimizer(cfg, variables["params"], 1, STEPS))
    reg = RegularizerConfig(orthogonality=LAM_O, sparsity=LAM_S, sparsity_type="hoyer")
    step = jax.jit(train_step, static_argnums=2)
    reference = jax.jit(jax.value_and_grad(official_loss), static_argnums=3)

    P = official_params(variables["params"], decomposition)
    m, v = jax.tree.map(jnp.zeros_like, P), jax.tree.map(jnp.zeros_like, P)
    x_nchw = x.transpose(0, 3, 1, 2)
    n_svd = len(conv_shapes())
    for t in range(1, STEPS + 1):
      state, metrics = step(state, {"image": x, "label": labels}, reg)
      ref_loss, grads = reference(P, x_nchw, labels, decomposition)
      # jaxsvd's Hoyer omits the official constant −1 per layer (no effect on gradients)
      chex.assert_trees_all_close(metrics["loss"], ref_loss + LAM_S * n_svd, rtol=1e-6)
      P, m, v = torch_adam(P, grads, m, v, t)
      chex.assert_trees_all_close(official_params(state.params, decomposition), P, rtol=1e-6, atol=1e-9)
    final = jnp.sign(jnp.concatenate([P[n]["Sigma"] for n in conv_shapes()]))
    assert int(jnp.sum(final != signs)) > 0  # some σ crossed zero: where signed and abs forwards part


# ---- the official energy rule, transcribed from cifar10_resnet20.py / imagenet_resnet.py ----

def official_kept(s, e, imagenet):
  """The official prune of one layer: the kept mask (True = kept)."""
  energy = np.sort(s.astype(np.float64) ** 2)[::-1]
  total = energy.sum()
  if imagenet and e == 0.0:
    threshold = 0.0
  else:
    current, idx = 0.0, 0
    while (current / total <= 1 - e) if imagenet else (current / total < 1 - e):
      current += energy[idx]
      idx += 1
    threshold = np.sqrt(energy[idx - 1])
  return ~(np.abs(s) < threshold)


@pytest.mark.parametrize("rule", ["official_cifar", "official_imagenet"])
def test_official_energy_rule_keeps_ties_on_hand_made_spectra(rule):
  s = np.array([3.0, -2.0, 1.0, 1.0, -1.0])  # energies 9, 4, 1, 1, 1 of 16 (exact in binary)
  imagenet = rule == "official_imagenet"
  expected = {0.1875: 5 if imagenet else 2,  # 13/16 kept = 1 − e exactly: `<` stops there, `<=` goes on
              0.1: 5,  # 15/16 reached at the 4th σ (= 1): its tie, the 5th, is kept too
              0.5: 1, 0.0: 5}
  for e, official in expected.items():
    k = len(keep_indices(s, 5, Strategy("energy", energy=e, energy_rule=rule)))
    assert k == official == official_kept(s, e, imagenet).sum(), (e, k)
  assert len(keep_indices(s, 5, Strategy("energy", energy=0.1))) == 4  # jaxsvd's smallest k cuts the tie
  zeros = np.array([3.0, 2.0, 1.0, 0.0, 0.0])  # e = 0: ImageNet keeps everything, CIFAR drops exact zeros
  assert len(keep_indices(zeros, 5, Strategy("energy", energy=0.0, energy_rule=rule))) == (5 if imagenet else 3)
  assert official_kept(zeros, 0.0, imagenet).sum() == (5 if imagenet else 3)


def test_official_energy_rule_matches_the_transcribed_loop_on_random_tied_spectra():
  rng = np.random.default_rng(0)
  for _ in range(200):
    s = rng.integers(-4, 5, size=rng.integers(1, 12)).astype(np.float64)
    if not np.any(s):
      continue
    e = float(rng.choice([0.0, 1e-3, 0.05, 0.1, 0.3, 0.6]))
    for rule, imagenet in (("official_cifar", False), ("official_imagenet", True)):
      kept = keep_indices(s, len(s), Strategy("energy", energy=e, energy_rule=rule))
      mask = official_kept(s, e, imagenet)
      assert sorted(kept.tolist()) == np.flatnonzero(mask).tolist(), (s, e, rule)


def test_energy_zero_needs_an_official_rule():
  with pytest.raises(ValueError, match="energy"):
    Strategy("energy", energy=0.0)
  with pytest.raises(ValueError, match="energy_rule"):
    Strategy("energy", energy_rule="torch")
