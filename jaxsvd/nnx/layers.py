"""Flax NNX SVD layers: ``nnx.Linear``, ``nnx.LinearGeneral``, ``nnx.Conv`` and ``nnx.Embed`` with W = U·diag(s)·Vᵀ.

Params are ``nnx.Param`` named ``U``, ``s``, ``V`` (and ``bias``), so ``jaxsvd.core.structure`` finds them in
``nnx.state(model).to_pure_dict()`` like any linen SVD layer. Matrix views (U on the output side):

  LinearSVD         kernel (c, n):              M = Kᵀ, n × c                        (``factors.kernel_to_matrix``)
  LinearGeneralSVD  kernel (*in, *out):         M = n × c, c = Π in, n = Π out (input axes flattened in ``axis``
                                                order, output axes flattened; per-batch kernels are not supported)
  ConvSVD           kernel (kh, kw, c, n):      channel n × kh·kw·c, spatial kw·n × kh·c (``factors``);
                    1-D kernel (k, c, n):       the 2-D view of (k, 1, c, n)
  EmbedSVD          embedding E (vocab, f):     the Dense kernel of one-hot ids, M = Eᵀ, f × vocab (as linen
                                                ``svdify``); the lookup and ``attend`` use one set of factors
The executions (``reconstruct`` / ``factored`` / ``auto``) are ``svd.dense_svd_apply`` /
``svd.conv_svd_apply``: outputs equal the linen ``DenseSVD``/``ConvSVD`` for the same factors.

Each layer is built either from a dense kernel (``kernel=``: its truncated SVD, the best rank-r approximation) or,
with ``rngs``, from a draw of ``kernel_init`` (``jaxsvd.core.svd.svd_init``: He-equivalent, ‖W_r‖_F = ‖W‖_F below
full rank) or, with ``init='official'``, as the official code draws them (``jaxsvd.core.svd.official_init``).
``sigma='abs'`` computes W = U·diag(|s|)·Vᵀ, the official forward (``jaxsvd.core.svd``: same function as √|s| in both
factors, finite gradient at s = 0); 'signed' (default) uses s as it is.
The rank is not stored: it is ``s.shape[0]``, so pruning only changes param shapes.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.nnx.nn import dtypes
from flax.nnx.nn.linear import canonicalize_padding

from jaxsvd.core import factors, svd
from jaxsvd.core.structure import check_rank
from jaxsvd.core.validate import check_choice
from jaxsvd.nnx.params import factor_sharding, make_param, on_device, sharding_metadata, to_host
from jaxsvd.nnx.surface import KernelAttribute

default_kernel_init = nnx.initializers.lecun_normal()
default_embed_init = nnx.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
zeros = nnx.initializers.zeros_init()


MIN_FLAX = (0, 12)  # nnx.data / nnx.List / Variable.set_value (the pytree Modules of flax 0.12)


def require_flax_nnx() -> None:
  """One-line error unless the installed flax has the NNX API these layers use (flax >= 0.12).

  Raises:
    RuntimeError: naming the installed and the needed version.
  """
  if tuple(int(p) for p in flax.__version__.split(".")[:2]) < MIN_FLAX:
    raise RuntimeError(f"jaxsvd's NNX support needs flax >= {'.'.join(map(str, MIN_FLAX))}; "
                       f"flax {flax.__version__} is installed (pip install -U flax)")


def truncated_svd(matrix: jax.Array, rank: int | None, where: str):
  """(U (m, r), s (r,), V (k, r)) of the best rank-r approximation of ``matrix`` (m, k) (Eckart–Young).

  Args:
    matrix: the matrix view M of a kernel.
    rank: r, or None for full rank min(m, k).
    where: the layer named in the error.

  Returns:
    The leading r singular triplets, s descending.

  Raises:
    ValueError: if ``rank`` is not None or an int in [1, min(m, k)].
  """
  full = min(matrix.shape)
  rank = full if rank is None else rank
  check_rank(f"{where}.rank", rank)
  if rank > full:
    raise ValueError(f"{where}.rank={rank} exceeds min(m, n)={full} for matrix {matrix.shape[0]}x{matrix.shape[1]}")
  if on_device(matrix):  # under jit / nnx.eval_shape, or spread over processes
    u, s, vt = jnp.linalg.svd(matrix.astype(jnp.float32), full_matrices=False)
  else:  # a concrete kernel: float64 LAPACK on the host (no XLA compile per kernel shape)
    u, s, vt = np.linalg.svd(np.asarray(matrix, np.float64), full_matrices=False)
  return u[:, :rank], s[:rank], vt[:rank].T


def _factors(module, kernel, kernel_shape, decomposition, rank, kernel_init, rngs, param_dtype, metadata=({},) * 3,
             init: str = "svd_of_he"):
  """Sets ``module.U/s/V`` from ``kernel`` (truncated SVD) or, when it is None, from a draw: ``init`` 'svd_of_he'
  (the SVD of a ``kernel_init`` draw) or 'official' (``svd.official_init``: the official code's init)."""
  require_flax_nnx()
  where = type(module).__name__
  if kernel is None:
    if rngs is None:
      raise ValueError(f"{where}: pass rngs= (random init) or kernel= (decompose a dense kernel)")
    check_rank(f"{where}.rank", rank, allow_none=True)
    rows, cols = factors.matrix_shape(kernel_shape, decomposition)
    if rank is not None and rank > min(rows, cols):
      raise ValueError(f"{where}.rank={rank} exceeds min(m, n)={min(rows, cols)} for matrix {rows}x{cols}")
    if init == "official":
      U, s, V = svd.official_init(rngs.params(), kernel_shape, decomposition, rank or min(rows, cols))
    else:
      U, s, V = svd.svd_init(rngs.params(), kernel_shape, decomposition, rank or min(rows, cols), kernel_init)
  else:
    kernel = to_host(kernel)
    U, s, V = truncated_svd(factors.kernel_to_matrix(kernel.reshape(kernel_shape), decomposition), rank, where)
  module.U, module.s, module.V = (make_param(a, param_dtype, m) for a, m in zip((U, s, V), metadata))


def _bias(use_bias, bias, shape, bias_init, rngs, param_dtype, metadata=None):
  if not use_bias:
    return nnx.data(None)
  if bias is None:
    bias = bias_init(rngs.params(), shape, param_dtype)
  return make_param(np.reshape(to_host(bias), shape) if not on_device(bias) else bias.reshape(shape),
                    param_dtype, sharding_metadata(metadata))


def no_sharding(module, out_sharding):
  """One-line error unless ``out_sharding`` is None (the SVD layers' outputs follow their factors' sharding).

  Args:
    module: the layer named in the error.
    out_sharding: the call's ``out_sharding`` argument.

  Raises:
    ValueError: if it is not None.
  """
  if out_sharding is not None:
    raise ValueError(f"{type(module).__name__}: out_sharding is not supported by the SVD layers")


class SVDModule(nnx.Module):
  """The base of the NNX SVD layers: shared validation, the rank and the promoted factors."""

  def _check(self, mode: str, decomposition: str = "channel", sigma: str = "signed", init: str = "svd_of_he"):
    """Validates the layer's options (one-line errors naming the field) and keeps ``sigma`` for ``_promoted``."""
    name = type(self).__name__
    check_choice(f"{name}.mode", mode, svd.MODES)
    check_choice(f"{name}.decomposition", decomposition, svd.DECOMPOSITIONS)
    check_choice(f"{name}.sigma", sigma, svd.SIGMAS)
    check_choice(f"{name}.init", init, svd.INITS)
    self.sigma = sigma

  @property
  def rank(self) -> int:
    """r, read from the shape of ``s``."""
    return int(self.s.shape[0])

  def dense_kernel(self) -> jax.Array:
    """U·diag(s)·Vᵀ in the replaced layer's kernel shape and param dtype (``jaxsvd.nnx.surface``)."""
    s = svd.effective_s(self.s[...], self.sigma)
    kernel = factors.factors_to_kernel(self.U[...], s, self.V[...], self._matrix_kernel_shape(),
                                       getattr(self, "decomposition", "channel"))
    return kernel.reshape(self._dense_kernel_shape()).astype(self.U.dtype)

  def _promoted(self, x, inexact=True):
    bias = self.bias[...] if self.bias is not None else None
    s = svd.effective_s(self.s[...], self.sigma)  # 'abs': the official forward, |σ| (``jaxsvd.core.svd``)
    return dtypes.promote_dtype((x, self.U[...], s, self.V[...], bias), dtype=self.dtype, inexact=inexact)

  def _operands(self, x):
    """(x, U, s, V, bias, compute dtype) of a linear/conv call. With ``dtype`` unset all are promoted to a common
    dtype (compute dtype None); with it set the factors stay in the param dtype (float32), so the kernel is formed
    there and cast once, and the apply sums the products in float32 (``jaxsvd.core.svd.dense_svd_apply``)."""
    if self.dtype is None:
      return (*self._promoted(x), None)
    bias = self.bias[...] if self.bias is not None else None
    return x, self.U[...], svd.effective_s(self.s[...], self.sigma), self.V[...], bias, self.dtype

  def _output(self, y, b):
    """y + b in ``dtype`` when it is set (``nnx.Linear``/``nnx.Conv``'s output dtype), else in y's dtype."""
    y = y if b is None else y + b.astype(y.dtype)
    return y if self.dtype is None else y.astype(self.dtype)


class LinearSVD(SVDModule):
  """``nnx.Linear`` as U (n, r), s (r,), V (c, r): y = x·V·diag(s)·Uᵀ + b; ``kernel`` reads U·diag(s)·Vᵀ as (c, n)."""

  kernel = KernelAttribute()

  def __init__(self, in_features: int, out_features: int, *, rank: int | None = None, use_bias: bool = True,
               mode: str = "auto", dtype: Any = None, param_dtype: Any = jnp.float32,
               kernel_init=default_kernel_init, bias_init=zeros, kernel=None, bias=None, rngs: nnx.Rngs | None = None,
               kernel_metadata=None, bias_metadata=None, sigma: str = "signed", init: str = "svd_of_he"):
    self._check(mode, sigma=sigma, init=init)
    self.in_features, self.out_features, self.use_bias = in_features, out_features, use_bias
    self.mode, self.dtype, self.param_dtype = mode, dtype, param_dtype
    _factors(self, kernel, (in_features, out_features), "channel", rank, kernel_init, rngs, param_dtype,
             factor_sharding(kernel_metadata, 1, 0), init)
    self.bias = _bias(use_bias, bias, (out_features,), bias_init, rngs, param_dtype, bias_metadata)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    """(..., c) → (..., n)."""
    no_sharding(self, out_sharding)
    x, U, s, V, b, dtype = self._operands(inputs)
    return self._output(svd.dense_svd_apply(x, U, s, V, self.out_features, self.mode, dtype), b)

  def _matrix_kernel_shape(self):
    return (self.in_features, self.out_features)

  _dense_kernel_shape = _matrix_kernel_shape


def _tuple(x) -> tuple[int, ...]:
  return (x,) if isinstance(x, int) else tuple(x)


class LinearGeneralSVD(SVDModule):
  """``nnx.LinearGeneral`` (no ``batch_axis``) with its kernel (*in, *out) held as the (Π in) × (Π out) Dense
  kernel's U (Π out, r), s, V (Π in, r); the contracted input axes are flattened in ``axis`` order. ``kernel``
  reads U·diag(s)·Vᵀ as (*in, *out)."""

  kernel = KernelAttribute()

  def __init__(self, in_features, out_features, *, axis=-1, rank: int | None = None, use_bias: bool = True,
               mode: str = "auto", dtype: Any = None, param_dtype: Any = jnp.float32,
               kernel_init=default_kernel_init, bias_init=zeros, kernel=None, bias=None, rngs: nnx.Rngs | None = None,
               kernel_metadata=None, bias_metadata=None, sigma: str = "signed", init: str = "svd_of_he"):
    self._check(mode, sigma=sigma, init=init)
    self.in_features, self.out_features, self.axis = _tuple(in_features), _tuple(out_features), _tuple(axis)
    if len(self.in_features) != len(self.axis):
      raise ValueError(f"LinearGeneralSVD: in_features {self.in_features} and axis {self.axis} differ in length")
    self.use_bias, self.mode, self.dtype, self.param_dtype = use_bias, mode, dtype, param_dtype
    dense_shape = (int(np.prod(self.in_features)), int(np.prod(self.out_features)))
    _factors(self, kernel, dense_shape, "channel", rank, kernel_init, rngs, param_dtype,
             factor_sharding(kernel_metadata, len(self.in_features), 0), init)
    self.bias = _bias(use_bias, bias, self.out_features, bias_init, rngs, param_dtype, bias_metadata)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    """Contracts ``axis`` of ``inputs``: output = the other axes (in order) + ``out_features``."""
    no_sharding(self, out_sharding)
    axis = tuple(a % inputs.ndim for a in self.axis)
    rest = tuple(a for a in range(inputs.ndim) if a not in axis)
    x, U, s, V, b, dtype = self._operands(inputs)
    x = jnp.transpose(x, rest + axis).reshape(*(inputs.shape[a] for a in rest), -1)
    y = svd.dense_svd_apply(x, U, s, V, U.shape[0], self.mode, dtype).reshape(*x.shape[:-1], *self.out_features)
    return self._output(y, b)

  def _matrix_kernel_shape(self):
    return (int(np.prod(self.in_features)), int(np.prod(self.out_features)))

  def _dense_kernel_shape(self):
    return (*self.in_features, *self.out_features)


class ConvSVD(SVDModule):
  """``nnx.Conv`` (1-D or 2-D, channels last, one feature group, no dilation or mask) as U, s, V.

  ``padding``: as ``nnx.Conv`` ('SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL' (1-D), ints or pairs).
  ``kernel_shape`` is ``nnx.Conv``'s, (*kernel_size, c, n); ``kernel`` reads U·diag(s)·Vᵀ in it.
  """

  kernel = KernelAttribute()

  def __init__(self, in_features: int, out_features: int, kernel_size, strides=1, *, padding: Any = "SAME",
               rank: int | None = None, decomposition: str = "channel", mode: str = "auto", use_bias: bool = True,
               dtype: Any = None, param_dtype: Any = jnp.float32, kernel_init=default_kernel_init,
               bias_init=zeros, kernel=None, bias=None, rngs: nnx.Rngs | None = None, kernel_metadata=None,
               bias_metadata=None, sigma: str = "signed", init: str = "svd_of_he"):
    self._check(mode, decomposition, sigma, init)
    self.kernel_size = _tuple(kernel_size)
    if len(self.kernel_size) not in (1, 2):
      raise ValueError(f"ConvSVD: kernel_size={kernel_size!r} is not 1-D or 2-D")
    self.in_features, self.out_features, self.strides, self.padding = in_features, out_features, strides, padding
    self.decomposition, self.mode, self.use_bias = decomposition, mode, use_bias
    self.dtype, self.param_dtype = dtype, param_dtype
    native = self.kernel_shape = (*self.kernel_size, in_features, out_features)
    native_init = lambda key, shape, dtype: kernel_init(key, native, dtype).reshape(shape)  # the native fan-in
    nd = len(self.kernel_size)  # channel: U rows n, V rows (kh, kw, c); spatial: U (kw, n), V (kh, c)
    u_axis = nd + 1 if decomposition == "channel" or nd == 1 else 1
    _factors(self, kernel, self.hwio_shape, decomposition, rank, native_init, rngs, param_dtype,
             factor_sharding(kernel_metadata, u_axis, 0), init)
    self.bias = _bias(use_bias, bias, (out_features,), bias_init, rngs, param_dtype, bias_metadata)

  @property
  def hwio_shape(self) -> tuple[int, int, int, int]:
    """The 2-D HWIO kernel shape the factors describe ((k, 1, c, n) for a 1-D conv)."""
    kh, kw = self.kernel_size if len(self.kernel_size) == 2 else (self.kernel_size[0], 1)
    return (kh, kw, self.in_features, self.out_features)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    """(*batch, *spatial, c) → (*batch, *spatial', n), as ``nnx.Conv``."""
    no_sharding(self, out_sharding)
    nd = len(self.kernel_size)
    batch_shape = inputs.shape[: inputs.ndim - nd - 1]
    x = inputs.reshape(-1, *inputs.shape[inputs.ndim - nd - 1:])
    x, padding = _explicit_padding(x, self.padding, self.kernel_size)
    strides = (self.strides,) * nd if isinstance(self.strides, int) or self.strides is None else tuple(self.strides)
    strides = tuple(1 if st is None else st for st in strides)
    if nd == 1:
      x, strides = x[:, :, None, :], (strides[0], 1)
      padding = padding if isinstance(padding, str) else [*padding, (0, 0)]
    kernel_shape = self.hwio_shape
    x, U, s, V, b, dtype = self._operands(x)
    pads = factors.conv_pads(x.shape[1:3], kernel_shape[:2], strides, padding)
    y = self._output(svd.conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, self.decomposition, self.mode, dtype),
                     b)
    y = y[:, :, 0, :] if nd == 1 else y
    return y.reshape(*batch_shape, *y.shape[1:])

  def _matrix_kernel_shape(self):
    return self.hwio_shape

  def _dense_kernel_shape(self):
    return self.kernel_shape


def _explicit_padding(x, padding, kernel_size):
  """``x`` pre-padded for nnx's 'CIRCULAR'/'REFLECT'/'CAUSAL' (then 'VALID'), else ``x`` and lax-style padding."""
  padding = canonicalize_padding(padding, len(kernel_size))
  if padding in ("CIRCULAR", "REFLECT"):
    pads = [(0, 0), *(((k - 1) // 2, k // 2) for k in kernel_size), (0, 0)]
    return jnp.pad(x, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding]), "VALID"
  if padding == "CAUSAL":
    if len(kernel_size) != 1:
      raise ValueError("ConvSVD: 'CAUSAL' padding is only defined for 1-D convolutions")
    return jnp.pad(x, [(0, 0), (kernel_size[0] - 1, 0), (0, 0)]), "VALID"
  return x, padding


class EmbedSVD(SVDModule):
  """``nnx.Embed`` as the Dense kernel E (vocab, features) applied to one-hot ids: U (features, r), s, V (vocab, r),
  E = V·diag(s)·Uᵀ (the linen ``svdify`` view). A lookup is V[ids]·diag(s)·Uᵀ; ``attend`` (tied logits) uses the
  same factors: q·Eᵀ = q·U·diag(s)·Vᵀ. ``embedding`` reads V·diag(s)·Uᵀ as (vocab, features)."""

  embedding = KernelAttribute()

  def __init__(self, num_embeddings: int, features: int, *, rank: int | None = None, mode: str = "auto",
               dtype: Any = None, param_dtype: Any = jnp.float32, embedding_init=default_embed_init,
               embedding=None, rngs: nnx.Rngs | None = None, embedding_metadata=None, sigma: str = "signed",
               init: str = "svd_of_he"):
    self._check(mode, sigma=sigma, init=init)
    self.num_embeddings, self.features, self.mode = num_embeddings, features, mode
    self.param_dtype, self.dtype, self.bias = param_dtype, dtype, nnx.data(None)
    _factors(self, embedding, (num_embeddings, features), "channel", rank, embedding_init, rngs, param_dtype,
             factor_sharding(embedding_metadata, 1, 0), init)

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    """Integer ids (...) → embeddings (..., features): V[ids]·diag(s)·Uᵀ (``reconstruct``: E[ids])."""
    no_sharding(self, out_sharding)
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError("EmbedSVD: input type must be an integer or unsigned integer")
    _, U, s, V, _ = self._promoted(jnp.zeros((), self.dtype or self.param_dtype), inexact=False)
    if self.mode == "reconstruct":
      return jnp.take(factors.factors_to_kernel(U, s, V, (self.num_embeddings, self.features)), inputs, axis=0)
    return (jnp.take(V, inputs, axis=0) * s) @ U.T

  def attend(self, query: jax.Array, out_sharding=None) -> jax.Array:
    """(..., features) → (..., vocab) logits q·Eᵀ = q·U·diag(s)·Vᵀ."""
    no_sharding(self, out_sharding)
    q, U, s, V, _ = self._promoted(query)
    return svd.dense_svd_apply(q, V, s, U, self.num_embeddings, self.mode)  # Eᵀ's factors: roles swapped

  def _matrix_kernel_shape(self):
    return (self.num_embeddings, self.features)

  _dense_kernel_shape = _matrix_kernel_shape


SVD_LAYERS = (LinearSVD, LinearGeneralSVD, ConvSVD, EmbedSVD)


__all__ = ["MIN_FLAX", "require_flax_nnx", "truncated_svd", "no_sharding", "SVDModule", "LinearSVD", "LinearGeneralSVD", "ConvSVD", "EmbedSVD", "SVD_LAYERS"]
