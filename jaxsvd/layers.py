"""SVD-form Dense and Conv layers: W = U · diag(s) · Vᵀ.

Matrix views of a kernel and the two executions with their MAC counts are in ``jaxsvd.factors``.

Execution modes (same outputs to float tolerance):
  reconstruct: build the kernel from (U, s, V) and run one conv/matmul;
  factored:    run the two factors (s folded into the V factor);
  auto:        pick whichever costs fewer MACs at the traced input shape (output channels counted in
               multiples of CHANNEL_QUANTUM, as vector units process them).
s is folded into the V factor (not √s into both) so that s may change sign and the
gradient stays finite at s = 0; `export.factored` gives the symmetric √|s| form.

``sigma`` picks how s enters the kernel:
  signed: W = U·diag(s)·Vᵀ (s may be negative);
  abs:    W = U·diag(|s|)·Vᵀ — the official code's training forward (U·√|s|)·(V·√|s|)ᵀ, the same function
          of (U, s, V). |s| is folded into one factor instead of √|s| into both, so the gradient stays finite at
          s = 0: ∂W/∂s_i = sign(s_i)·u_i·v_iᵀ, with JAX's subgradient d|s|/ds = 1 at s = 0 (the official
          √|s| in both factors has d√x/dx = ∞ there: torch gives NaN if an s hits 0 exactly).
``init`` (layer field ``init_scheme``) picks the initialization:
  svd_of_he: (U, s, V) from the SVD of a He-normal kernel (``svd_init``);
  official:  the official code's: U, V Kaiming-normal as torch lays them out, s ~ N(0, 1) (``official_init``).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsvd.factors import (
  CHANNEL_QUANTUM,
  choose_mode,
  conv,
  conv_macs,
  conv_pads,
  dense_macs,
  factored_conv,
  factors_to_kernel,
  kernel_to_matrix,
  matrix_shape,
)
from jaxsvd.structure import check_rank
from jaxsvd.validate import check_choice

MODES = ("reconstruct", "factored", "auto")
DECOMPOSITIONS = ("channel", "spatial")
SIGMAS = ("signed", "abs")
INITS = ("svd_of_he", "official")

default_kernel_init = nn.initializers.he_normal()


def svd_init(key, kernel_shape, decomposition, rank, kernel_init=default_kernel_init):
  """(U, s, V) from the SVD of a kernel drawn from ``kernel_init`` (He-normal by default).

  At full rank the reconstructed kernel *is* the draw, so its distribution equals the dense
  layer's init. Below full rank s is rescaled so ‖W_r‖_F = ‖W‖_F (output variance preserved):
  s_r = s[:r]·√(Σᵢ sᵢ² / Σ_{i<r} sᵢ²).

  Args:
    key: PRNG key of the kernel draw.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' matrix view.
    rank: r, the number of leading singular triplets kept.
    kernel_init: initializer ``(key, shape, dtype)``; the kernel is drawn in float32.

  Returns:
    (U (rows, r), s (r,), V (cols, r)), with (rows, cols) = ``matrix_shape(kernel_shape, decomposition)``.
  """
  kernel = kernel_init(key, tuple(kernel_shape), jnp.float32)
  u, s, vt = jnp.linalg.svd(kernel_to_matrix(kernel, decomposition), full_matrices=False)
  s_r = s[:rank] * jnp.sqrt(jnp.sum(s**2) / jnp.maximum(jnp.sum(s[:rank] ** 2), 1e-30))
  return u[:, :rank], s_r, vt[:rank].T


def official_init(key, kernel_shape, decomposition, rank):
  """(U, s, V) as the official ``SVD_Conv2d`` initializes them, in jaxsvd's layout.

  torch's ``kaiming_normal_`` on a 2-D (a, b) tensor draws N(0, 2 / b). The official code holds channel-wise
  N (n, r) and C (r, c·kh·kw), spatial-wise N (c·kh, r) and C (r, n·kw), and Sigma ~ N(0, 1). In jaxsvd's
  layout (rows permuted, which leaves an i.i.d. draw's distribution unchanged):
    channel (and Dense): U (n, r) ~ N(0, 2/r),     V (kh·kw·c, r) ~ N(0, 2/(kh·kw·c));
    spatial:             U (kw·n, r) ~ N(0, 2/(kw·n)), V (kh·c, r) ~ N(0, 2/r).

  Args:
    key: PRNG key.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    decomposition: 'channel' or 'spatial' matrix view.
    rank: r.

  Returns:
    (U (rows, r), s (r,), V (cols, r)) in float32.
  """
  rows, cols = matrix_shape(kernel_shape, decomposition)
  spatial = len(kernel_shape) == 4 and decomposition == "spatial"
  u_var, v_var = (2.0 / rows, 2.0 / rank) if spatial else (2.0 / rank, 2.0 / cols)
  ku, ks, kv = jax.random.split(key, 3)
  normal = lambda k, shape: jax.random.normal(k, shape, jnp.float32)  # noqa: E731
  return normal(ku, (rows, rank)) * jnp.sqrt(u_var), normal(ks, (rank,)), normal(kv, (cols, rank)) * jnp.sqrt(v_var)


def effective_s(s, sigma: str):
  """The diagonal the kernel uses: s ('signed') or |s| ('abs', the official forward; see the module doc)."""
  return jnp.abs(s) if sigma == "abs" else s


def svd_params(owner: nn.Module, kernel_shape, rank: int | None, decomposition: str, kernel_init=default_kernel_init,
               init: str = "svd_of_he"):
  """Creates (or reads) params U, s, V of ``kernel_shape`` at ``rank`` in ``owner``'s scope (a compact method).

  At init all three come from one ``svd_init`` draw keyed by ``owner.make_rng('params')``.

  Args:
    owner: the flax module whose scope holds the params.
    kernel_shape: (c, n) for a Dense kernel or (kh, kw, c, n) for an HWIO conv kernel.
    rank: r, or None for full rank min(rows, cols) of the matrix view.
    decomposition: 'channel' or 'spatial' matrix view.
    kernel_init: initializer of the kernel that is decomposed ('svd_of_he' only).
    init: 'svd_of_he' (``svd_init``) or 'official' (``official_init``).

  Returns:
    (U (rows, r), s (r,), V (cols, r)), with (rows, cols) = ``matrix_shape(kernel_shape, decomposition)``.

  Raises:
    ValueError: if ``rank`` exceeds min(rows, cols).
  """
  rows, cols = matrix_shape(kernel_shape, decomposition)
  full = min(rows, cols)
  rank = full if rank is None else rank
  if rank > full:
    raise ValueError(f"{type(owner).__name__}.rank={rank} exceeds min(m, n)={full} for matrix {rows}x{cols}")
  # One draw shared by U, s and V; at apply time the init is only shape-checked (eval_shape).
  key = owner.make_rng("params") if owner.is_initializing() else jax.random.key(0)
  if init == "official":
    draw = lambda k: official_init(k, kernel_shape, decomposition, rank)  # noqa: E731
  else:
    draw = lambda k: svd_init(k, kernel_shape, decomposition, rank, kernel_init)  # noqa: E731
  return tuple(owner.param(name, lambda _, k, i=i: draw(k)[i], key) for i, name in enumerate(("U", "s", "V")))


def dense_svd_apply(x, U, s, V, features: int, mode: str):
  """y = x·V·diag(s)·Uᵀ, as one matmul with the rebuilt kernel or as two (``mode``, 'auto' by MACs).

  Args:
    x: (..., c) input.
    U: (n, r).
    s: (r,).
    V: (c, r).
    features: n.
    mode: 'reconstruct', 'factored' or 'auto' (fewer ``CHANNEL_QUANTUM``-quantized MACs, see ``dense_macs``).

  Returns:
    (..., n) output, without bias.
  """
  kernel_shape = (x.shape[-1], features)
  batch = max(1, x.size // x.shape[-1])
  if choose_mode(mode, dense_macs(batch, x.shape[-1], features, s.shape[0], CHANNEL_QUANTUM)) == "reconstruct":
    return x @ factors_to_kernel(U, s, V, kernel_shape)
  return (x @ (V * s)) @ U.T


def conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, decomposition: str, mode: str):
  """NHWC conv with the kernel U·diag(s)·Vᵀ: one conv with the rebuilt kernel or two (``mode``, 'auto' by MACs).

  Args:
    x, U, s, V, kernel_shape, strides, pads, decomposition: as in ``factors.factored_conv``.
    mode: 'reconstruct', 'factored' or 'auto' (fewer ``CHANNEL_QUANTUM``-quantized MACs, see ``conv_macs``).

  Returns:
    (N, Ho, Wo, n) output, without bias.
  """
  costs = conv_macs(x.shape[0], x.shape[1:3], kernel_shape, strides, pads, s.shape[0], decomposition, CHANNEL_QUANTUM)
  if choose_mode(mode, costs) == "reconstruct":
    return conv(x, factors_to_kernel(U, s, V, kernel_shape, decomposition), strides, pads)
  return factored_conv(x, U, s, V, kernel_shape, strides, pads, decomposition)


def cast(dtype, *xs):
  """``xs`` in ``dtype`` (None: unchanged).

  Args:
    dtype: the target dtype, or None.
    *xs: arrays.

  Returns:
    The tuple of ``xs``, each cast to ``dtype``.
  """
  return xs if dtype is None else tuple(x.astype(dtype) for x in xs)


def add_bias(owner: nn.Module, y, use_bias: bool, features: int, bias_init, param_dtype=jnp.float32):
  """y + b with b a param 'bias' of ``owner`` (a compact method), or y when ``use_bias`` is False.

  Args:
    owner: the flax module whose scope holds the param.
    y: (..., features) output.
    use_bias: whether to add b.
    features: the size of b.
    bias_init: initializer of b.
    param_dtype: the dtype b is stored in; it is cast to ``y.dtype`` when added.

  Returns:
    y + b (or y), in ``y.dtype``.
  """
  if not use_bias:
    return y
  return y + owner.param("bias", bias_init, (features,), param_dtype).astype(y.dtype)


class _SVDBase(nn.Module):
  """Shared fields, validation and parameter creation of the SVD layers."""

  def __post_init__(self):
    check_choice(f"{type(self).__name__}.mode", self.mode, MODES)
    check_choice(f"{type(self).__name__}.decomposition", self.decomposition, DECOMPOSITIONS)
    check_rank(f"{type(self).__name__}.rank", self.rank, allow_none=True)
    check_choice(f"{type(self).__name__}.sigma", self.sigma, SIGMAS)
    check_choice(f"{type(self).__name__}.init_scheme", self.init_scheme, INITS)
    super().__post_init__()

  def _factors(self, kernel_shape):
    U, s, V = svd_params(self, kernel_shape, self.rank, self.decomposition, self.kernel_init, self.init_scheme)
    return U, effective_s(s, self.sigma), V

  def _bias(self, y):
    return add_bias(self, y, self.use_bias, self.features, self.bias_init)

  def _cast(self, *xs):
    return cast(self.dtype, *xs)


class DenseSVD(_SVDBase):
  """Dense layer y = x·V·diag(s)·Uᵀ (+ b), i.e. kernel W = V·diag(s)·Uᵀ of shape (in, features).

  Params U (features, r), s (r,), V (in, r) and, with ``use_bias``, 'bias' (features,). ``rank`` None is full
  rank min(in, features); ``mode`` is the execution ('reconstruct', 'factored' or 'auto', see module doc);
  ``decomposition`` is validated but has no effect on a 2-D kernel; ``dtype`` (None: unchanged) is the dtype the
  input and factors are cast to before the computation; ``sigma`` and ``init_scheme`` (the ``init`` of the module
  doc) as there.
  """

  features: int
  rank: int | None = None
  use_bias: bool = True
  mode: str = "auto"
  decomposition: str = "channel"
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros
  sigma: str = "signed"
  init_scheme: str = "svd_of_he"  # not `init`: that is nn.Module.init

  @nn.compact
  def __call__(self, x):
    """Applies the layer.

    Args:
      x: (..., in) input.

    Returns:
      (..., features) output.
    """
    U, s, V = self._factors((x.shape[-1], self.features))
    x, U, s, V = self._cast(x, U, s, V)
    return self._bias(dense_svd_apply(x, U, s, V, self.features, self.mode))


class ConvSVD(_SVDBase):
  """2-D conv (NHWC, HWIO) whose kernel (kh, kw, c, n) is held as U, s, V (see module doc).

  n = ``features`` and (kh, kw) = ``kernel_size``; ``strides`` is a pair or an int; ``padding`` is 'SAME',
  'VALID', an int or per-dimension pads (see ``conv_pads``). ``rank`` None is full rank; ``decomposition`` picks
  the 'channel' or 'spatial' matrix view and ``mode`` the execution; ``dtype`` (None: unchanged) is the dtype the
  input and factors are cast to; ``sigma`` and ``init_scheme`` (the ``init`` of the module
  doc) as there. No bias unless ``use_bias``.
  """

  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: Sequence[int] = (1, 1)
  padding: Any = "SAME"
  rank: int | None = None
  decomposition: str = "channel"
  mode: str = "auto"
  use_bias: bool = False
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros
  sigma: str = "signed"
  init_scheme: str = "svd_of_he"  # not `init`: that is nn.Module.init

  @nn.compact
  def __call__(self, x):
    """Applies the conv.

    Args:
      x: (N, H, W, c) input.

    Returns:
      (N, Ho, Wo, features) output.
    """
    kh, kw = self.kernel_size
    strides = tuple(self.strides) if not isinstance(self.strides, int) else (self.strides,) * 2
    kernel_shape = (kh, kw, x.shape[-1], self.features)
    U, s, V = self._factors(kernel_shape)
    x, U, s, V = self._cast(x, U, s, V)
    pads = conv_pads(x.shape[1:3], (kh, kw), strides, self.padding)
    return self._bias(conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, self.decomposition, self.mode))
