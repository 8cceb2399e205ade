"""SVD-form Dense and Conv layers for flax linen: W = U · diag(s) · Vᵀ.

The framework-free math (inits, ``sigma``, the executions) is ``jaxsvd.core.svd``; matrix views of a kernel and
the two executions with their MAC counts are ``jaxsvd.core.factors``.

Execution modes (same outputs to float tolerance):
  reconstruct: build the kernel from (U, s, V) and run one conv/matmul;
  factored:    run the two factors (s folded into the V factor);
  auto:        pick whichever costs fewer MACs at the traced input shape (output channels counted in
               multiples of CHANNEL_QUANTUM, as vector units process them).
s is folded into the V factor (not √s into both) so that s may change sign and the
gradient stays finite at s = 0; ``jaxsvd.deploy.params.factored_params`` gives the symmetric √|s| form.
``sigma``, ``init_scheme``: see ``jaxsvd.core.svd``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsvd.core.factors import conv_pads, matrix_shape
from jaxsvd.core.structure import check_rank
from jaxsvd.core.svd import (
  DECOMPOSITIONS,
  INITS,
  MODES,
  SIGMAS,
  conv_svd_apply,
  default_kernel_init,
  dense_svd_apply,
  effective_s,
  official_init,
  svd_init,
)
from jaxsvd.core.validate import check_choice


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


class DenseSVD(_SVDBase):
  """Dense layer y = x·V·diag(s)·Uᵀ (+ b), i.e. kernel W = V·diag(s)·Uᵀ of shape (in, features).

  Params U (features, r), s (r,), V (in, r) and, with ``use_bias``, 'bias' (features,). ``rank`` None is full
  rank min(in, features); ``mode`` is the execution ('reconstruct', 'factored' or 'auto', see module doc);
  ``decomposition`` is validated but has no effect on a 2-D kernel; ``dtype`` (None: unchanged) is the compute dtype
  (e.g. bfloat16): the kernel (or V·diag(s)) is formed from the float32 params and cast once, the input too, and the
  products are summed in float32, the output's dtype (``jaxsvd.core.svd.dense_svd_apply``); ``sigma`` and
  ``init_scheme`` (the ``init`` of the module doc) as there.
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
    return self._bias(dense_svd_apply(x, U, s, V, self.features, self.mode, self.dtype))


class ConvSVD(_SVDBase):
  """2-D conv (NHWC, HWIO) whose kernel (kh, kw, c, n) is held as U, s, V (see module doc).

  n = ``features`` and (kh, kw) = ``kernel_size``; ``strides`` is a pair or an int; ``padding`` is 'SAME',
  'VALID', an int or per-dimension pads (see ``conv_pads``). ``rank`` None is full rank; ``decomposition`` picks
  the 'channel' or 'spatial' matrix view and ``mode`` the execution; ``dtype`` (None: unchanged) is the compute
  dtype, as in ``DenseSVD`` (float32 output and accumulation); ``sigma`` and ``init_scheme`` (the ``init`` of the module
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
    pads = conv_pads(x.shape[1:3], (kh, kw), strides, self.padding)
    return self._bias(conv_svd_apply(x, U, s, V, kernel_shape, strides, pads, self.decomposition, self.mode,
                                     self.dtype))


__all__ = ["svd_params", "add_bias", "DenseSVD", "ConvSVD"]
