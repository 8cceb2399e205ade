"""Regularizers of SVD training (Yang et al. 2020), per layer and summed over a params tree.

  orthogonality(U, V) = (‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r²
  hoyer(s)            = ‖s‖₁ / ‖s‖₂
  hoyer_square(s)     = ‖s‖₁² / ‖s‖₂²
  l1(s)               = ‖s‖₁
All are defined as 0 at s = 0 and have finite gradients there. The r × r Gram is the
cheaper orientation since r ≤ min(m, k). A stacked layer (U (*L, m, r), s (*L, r), V (*L, k, r): ``nn.scan``,
``nn.vmap``, grouped convs) contributes the sum of its slices' terms, each slice being its own layer.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxsvd.core.structure import iter_svd_layers, unboxed


@jax.custom_vjp
def gram_deviation(a: jax.Array) -> jax.Array:
  """‖AᵀA − I‖²_F, with the closed-form gradient 4·A·(AᵀA − I) (one GEMM for value, one for grad;
  autodiff of the plain formula needs three).

  Args:
    a: (m, r) matrix, or a stack (*L, m, r) of them.

  Returns:
    The scalar ‖AᵀA − I_r‖²_F (summed over the stack).
  """
  return _gram_deviation_fwd(a)[0]


def _gram_deviation_fwd(a):
  deviation = jnp.swapaxes(a, -1, -2) @ a - jnp.eye(a.shape[-1], dtype=a.dtype)
  return jnp.sum(jnp.square(deviation)), (a, deviation)


def _gram_deviation_bwd(residuals, g):
  a, deviation = residuals
  return (4.0 * g * (a @ deviation),)


gram_deviation.defvjp(_gram_deviation_fwd, _gram_deviation_bwd)


def orthogonality(U: jax.Array, V: jax.Array) -> jax.Array:
  """(‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r²: how far the columns of U and V are from orthonormal.

  Args:
    U: (m, r), or a stack (*L, m, r).
    V: (k, r), or a stack (*L, k, r).

  Returns:
    A scalar, 0 iff U and V both have orthonormal columns (summed over the stack).
  """
  r = U.shape[-1]
  return (gram_deviation(U) + gram_deviation(V)) / (r * r)


def _l1_and_sumsq(s):
  s = s.astype(jnp.promote_types(s.dtype, jnp.float32))  # at least float32 (float64 stays float64)
  return jnp.sum(jnp.abs(s)), jnp.sum(jnp.square(s))


def _safe_ratio(num, den):
  """num / den, and 0 (with a finite gradient) where den == 0."""
  positive = den > 0
  return jnp.where(positive, num / jnp.where(positive, den, 1.0), 0.0)


def hoyer(s: jax.Array) -> jax.Array:
  """Hoyer measure ‖s‖₁ / ‖s‖₂, computed in float32 (or wider); 0 at s = 0, with a finite gradient there.

  Args:
    s: (r,) singular values.

  Returns:
    A scalar, in [1, √r] for s ≠ 0 (1 when one entry is nonzero).
  """
  l1_norm, sumsq = _l1_and_sumsq(s)
  positive = sumsq > 0
  l2_norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sumsq, 1.0)), 0.0)
  return _safe_ratio(l1_norm, l2_norm)


def hoyer_square(s: jax.Array) -> jax.Array:
  """Hoyer-square measure ‖s‖₁² / ‖s‖₂², computed in float32 (or wider); 0 at s = 0, with a finite gradient there.

  Args:
    s: (r,) singular values.

  Returns:
    A scalar, in [1, r] for s ≠ 0 (1 when one entry is nonzero).
  """
  l1_norm, sumsq = _l1_and_sumsq(s)
  return _safe_ratio(jnp.square(l1_norm), sumsq)


def l1(s: jax.Array) -> jax.Array:
  """‖s‖₁ = Σᵢ |sᵢ|, in the dtype of ``s``.

  Args:
    s: (r,) singular values.

  Returns:
    A scalar.
  """
  return jnp.sum(jnp.abs(s))


SPARSITY = {"hoyer": hoyer, "hoyer_square": hoyer_square, "l1": l1}


def sparsity_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """The sparsity regularizer named ``name``.

  Args:
    name: a key of ``SPARSITY``: 'hoyer', 'hoyer_square' or 'l1'.

  Returns:
    The function s (r,) → scalar.

  Raises:
    ValueError: if ``name`` is not a key of ``SPARSITY``.
  """
  if name not in SPARSITY:
    raise ValueError(f"sparsity regularizer={name!r} is not one of {tuple(SPARSITY)}")
  return SPARSITY[name]


def per_slice(fn: Callable[[jax.Array], jax.Array], s: jax.Array) -> jax.Array:
  """Σ over the slices of a stack s (*L, r) of ``fn(s[l])`` (``fn(s)`` for a plain (r,) s).

  Args:
    fn: a regularizer of one (r,) vector.
    s: (r,) or (*L, r).

  Returns:
    A scalar.
  """
  if s.ndim == 1:
    return fn(s)
  return jnp.sum(jax.vmap(fn)(s.reshape(-1, s.shape[-1])))


def total_orthogonality(params) -> jax.Array:
  """Σ over every SVD layer of ``orthogonality(U, V)``.

  Args:
    params: the params pytree (SVD layers are found by structure, see ``structure.iter_svd_layers``; stacked
      layers count once per slice).

  Returns:
    A scalar (0 without SVD layers).
  """
  terms = [orthogonality(unboxed(n["U"]), unboxed(n["V"])) for _, n in iter_svd_layers(params)]
  return sum(terms, jnp.zeros((), jnp.float32))


def total_sparsity(params, name: str = "hoyer") -> jax.Array:
  """Σ over every SVD layer of the named sparsity regularizer of s.

  Args:
    params: the params pytree (SVD layers are found by structure, see ``structure.iter_svd_layers``).
    name: a key of ``SPARSITY``.

  Returns:
    A scalar (0 without SVD layers).

  Raises:
    ValueError: if ``name`` is not a key of ``SPARSITY``.
  """
  fn = sparsity_fn(name)
  terms = [per_slice(fn, unboxed(n["s"])) for _, n in iter_svd_layers(params)]
  return sum(terms, jnp.zeros((), jnp.float32))


__all__ = ["gram_deviation", "orthogonality", "hoyer", "hoyer_square", "l1", "SPARSITY", "sparsity_fn", "per_slice",
           "total_orthogonality", "total_sparsity"]
