"""Regularizers of SVD training (Yang et al. 2020), per layer and summed over a params tree.

  orthogonality(U, V) = (‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r²
  hoyer(s)            = ‖s‖₁ / ‖s‖₂
  hoyer_square(s)     = ‖s‖₁² / ‖s‖₂²
  l1(s)               = ‖s‖₁
All are defined as 0 at s = 0 and have finite gradients there. The r × r Gram is the
cheaper orientation since r ≤ min(m, k).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxsvd.structure import iter_svd_layers


@jax.custom_vjp
def gram_deviation(a: jax.Array) -> jax.Array:
  """‖AᵀA − I‖²_F, with the closed-form gradient 4·A·(AᵀA − I) (one GEMM for value, one for grad;
  autodiff of the plain formula needs three).

  Args:
    a: (m, r) matrix.

  Returns:
    The scalar ‖AᵀA − I_r‖²_F.
  """
  return _gram_deviation_fwd(a)[0]


def _gram_deviation_fwd(a):
  deviation = a.T @ a - jnp.eye(a.shape[1], dtype=a.dtype)
  return jnp.sum(jnp.square(deviation)), (a, deviation)


def _gram_deviation_bwd(residuals, g):
  a, deviation = residuals
  return (4.0 * g * (a @ deviation),)


gram_deviation.defvjp(_gram_deviation_fwd, _gram_deviation_bwd)


def orthogonality(U: jax.Array, V: jax.Array) -> jax.Array:
  """(‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F) / r²: how far the columns of U and V are from orthonormal.

  Args:
    U: (m, r).
    V: (k, r).

  Returns:
    A scalar, 0 iff U and V both have orthonormal columns.
  """
  r = U.shape[1]
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


def total_orthogonality(params) -> jax.Array:
  """Σ over every SVD layer of ``orthogonality(U, V)``.

  Args:
    params: the params pytree (SVD layers are found by structure, see ``structure.iter_svd_layers``).

  Returns:
    A scalar (0 without SVD layers).
  """
  terms = [orthogonality(n["U"], n["V"]) for _, n in iter_svd_layers(params)]
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
  terms = [fn(n["s"]) for _, n in iter_svd_layers(params)]
  return sum(terms, jnp.zeros((), jnp.float32))
