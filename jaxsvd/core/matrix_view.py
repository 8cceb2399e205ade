"""Any layer kernel as a stack of matrices M = U·diag(s)·Vᵀ, and back (pure functions).

A ``MatrixView`` reshapes a kernel to ``split_shape`` (only to split a grouped conv's output channels n into
(groups, n / groups)) and sorts its axes into three groups:
  stack  axes whose every index is its own matrix (DenseGeneral batch_dims, conv groups, Einsum batch letters);
  out    axes flattened into the rows of M (the U side: what the layer outputs);
  in     axes flattened into the columns of M (the V side: what the layer contracts with its input).
So M[l] (m × k) holds kernel entries with row index out(...) and column index in(...), in the axes' order, and
the factors are U (*L, m, r), s (*L, r), V (*L, k, r). Extra leading axes of a kernel beyond ``kernel_shape``
(``nn.scan``/``nn.vmap`` stacking of the whole layer) are carried through as further stack axes.

The views used by ``svdify`` (each layer kind's ``view``: ``jaxsvd.linen.kinds``, ``jaxsvd.nnx.kinds``):
  Dense (c, n), Embed (vocab, features)          M = Kᵀ: n × c (Embed: features × vocab; ``attend`` uses the same M)
  DenseGeneral (*batch, *in, *out)               stack = batch_dims, M = ∏out × ∏in
  Einsum 'lhs,kernel->out'                       stack = kernel letters in lhs and out,
                                                 M = (letters only in out) × (letters only in lhs)
  Conv/ConvTranspose (*k, c/g, n)                channel: stack = g groups, M = n/g × (∏k·c/g);
                                                 spatial (2-D): M = (kw·n/g) × (kh·c/g) (NNX ConvTranspose: channel
                                                 only, also with ``transpose_kernel``'s (*k, n, c) kernel)
  ConvLocal (*positions, ∏k·c, n)                stack = output positions, M = n × ∏k·c
These agree with ``factors.kernel_to_matrix`` on Dense and 2-D conv kernels.
"""

from __future__ import annotations

import dataclasses
import math
import re

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class MatrixView:
  """A kernel of ``kernel_shape`` as matrices: reshaped to ``split_shape``, axes grouped into stack/out/in."""

  kernel_shape: tuple[int, ...]
  split_shape: tuple[int, ...]
  stack: tuple[int, ...]
  out: tuple[int, ...]
  inp: tuple[int, ...]

  def __post_init__(self):
    if sorted(self.stack + self.out + self.inp) != list(range(len(self.split_shape))):
      raise ValueError(f"MatrixView axes {self.stack}, {self.out}, {self.inp} do not partition {self.split_shape}")
    if math.prod(self.split_shape) != math.prod(self.kernel_shape):
      raise ValueError(f"MatrixView split_shape {self.split_shape} does not fit kernel {self.kernel_shape}")

  @property
  def stack_shape(self) -> tuple[int, ...]:
    """L: the shape of the stack of matrices."""
    return tuple(self.split_shape[a] for a in self.stack)

  @property
  def matrix_shape(self) -> tuple[int, int]:
    """(m, k): rows (U side) and columns (V side) of each matrix."""
    return (math.prod(self.split_shape[a] for a in self.out), math.prod(self.split_shape[a] for a in self.inp))

  @property
  def full_rank(self) -> int:
    """min(m, k)."""
    return min(self.matrix_shape)

  def to_matrix(self, kernel):
    """(*lead, *kernel_shape) → (*lead, *L, m, k); ``lead`` are any extra leading (scan) axes."""
    lead = kernel.shape[:kernel.ndim - len(self.kernel_shape)]
    n = len(lead)
    x = kernel.reshape(*lead, *self.split_shape)
    x = jnp.transpose(x, (*range(n), *(n + a for a in self.stack + self.out + self.inp)))
    return x.reshape(*lead, *self.stack_shape, *self.matrix_shape)

  def to_kernel(self, U, s, V):
    """The kernel (*lead, *kernel_shape) whose matrices are U·diag(s)·Vᵀ (the inverse of ``to_matrix``)."""
    lead = U.shape[:U.ndim - 2 - len(self.stack)]
    n = len(lead)
    m = (U * s[..., None, :]) @ jnp.swapaxes(V, -1, -2)
    order = self.stack + self.out + self.inp
    x = m.reshape(*lead, *(self.split_shape[a] for a in order))
    x = jnp.transpose(x, (*range(n), *(n + order.index(a) for a in range(len(order)))))
    return x.reshape(*lead, *self.kernel_shape)

  def factors(self, kernel, rank: int, keep_norm: bool = False):
    """(U, s, V) of the best rank-``rank`` approximation of each matrix of ``kernel`` (Eckart–Young).

    Args:
      kernel: (*lead, *kernel_shape).
      rank: r ≤ min(m, k).
      keep_norm: rescale s so each matrix keeps its Frobenius norm (s_r·√(Σ s² / Σ_{i<r} s²); the init rule).

    Returns:
      U (*lead, *L, m, r), s (*lead, *L, r), V (*lead, *L, k, r).
    """
    u, s, vt = jnp.linalg.svd(self.to_matrix(kernel), full_matrices=False)
    s_r = s[..., :rank]
    if keep_norm:
      total, kept = jnp.sum(s**2, -1, keepdims=True), jnp.sum(s_r**2, -1, keepdims=True)
      s_r = s_r * jnp.sqrt(total / jnp.maximum(kept, 1e-30))
    return u[..., :rank], s_r, jnp.swapaxes(vt[..., :rank, :], -1, -2)

  def factor_names(self, names: tuple, rank_name: str | None) -> tuple[tuple, tuple, tuple]:
    """Axis names of U, s, V from the kernel's (``nn.with_logical_partitioning`` / ``nn.Partitioned``).

    A flattened group of axes takes the name of its leading (major) axis: sharding the flattened axis in blocks
    is sharding that axis. A grouped conv's split n takes n's name on the group axis.

    Args:
      names: one name (or None) per kernel axis.
      rank_name: the name of the rank axis.

    Returns:
      (U names, s names, V names).
    """
    split = list(names)
    if len(self.split_shape) == len(names) + 1:  # n split into (groups, n / groups)
      split = [*names[:-1], names[-1], None]
    stack = tuple(split[a] for a in self.stack)
    major = lambda axes: split[axes[0]] if axes else None
    return (*stack, major(self.out), rank_name), (*stack, rank_name), (*stack, major(self.inp), rank_name)


def simple_view(kernel_shape, n_stack: int, n_in: int) -> MatrixView:
  """Kernel axes (*stack, *in, *out) in that order (Dense, Embed, DenseGeneral, ConvLocal, channel-view convs).

  Args:
    kernel_shape: the kernel's shape.
    n_stack: how many leading axes are stack axes.
    n_in: how many axes after them are contracted (in, the V side); all remaining axes are out (the U side).

  Returns:
    The ``MatrixView`` (no reshape: ``split_shape`` is ``kernel_shape``).
  """
  shape = tuple(kernel_shape)
  axes = tuple(range(len(shape)))
  return MatrixView(shape, shape, axes[:n_stack], axes[n_stack + n_in:], axes[n_stack:n_stack + n_in])


def conv_view(kernel_shape, groups: int, decomposition: str) -> MatrixView:
  """A conv kernel (*k, c/g, n): per group, n/g × ∏k·c/g ('channel') or, for 2-D, kw·n/g × kh·c/g ('spatial').

  Args:
    kernel_shape: the conv kernel's shape (*k, c/g, n).
    groups: the feature group count g; for g > 1, n is split into (g, n/g) and the g axis is the stack axis.
    decomposition: 'spatial' for the spatial view of a 2-D kernel; any other value (and 'spatial' on a kernel that
      is not 2-D) gives the 'channel' view.

  Returns:
    The ``MatrixView``.
  """
  shape = tuple(kernel_shape)
  nk = len(shape) - 2
  n = shape[-1]
  split = shape if groups == 1 else (*shape[:-1], groups, n // groups)
  stack = () if groups == 1 else (nk + 1,)
  out_axis = len(split) - 1
  if decomposition == "spatial" and nk == 2:
    return MatrixView(shape, split, stack, (1, out_axis), (0, 2))
  return MatrixView(shape, split, stack, (out_axis,), tuple(range(nk + 1)))


def einsum_view(kernel_shape, einsum_str: str) -> MatrixView | str:
  """The view of an ``nn.Einsum`` kernel, or the reason it is not a stack of matrices.

  Kernel letters in both the input and the output are stack axes, those only in the input are contracted (in),
  those only in the output are produced (out).

  Args:
    kernel_shape: the kernel's shape, one axis per letter of the kernel spec.
    einsum_str: the layer's 'input,kernel->output' einsum string (spaces are ignored).

  Returns:
    The ``MatrixView``, or a one-line reason (a str) if the string is malformed, the kernel spec does not name each
    kernel axis once, a kernel axis is summed away, or the kernel has no input or no output axis.
  """
  spec = einsum_str.replace(" ", "")
  match = re.fullmatch(r"([a-zA-Z.]*),([a-zA-Z]*)->([a-zA-Z.]*)", spec)
  if match is None:
    return f"einsum {einsum_str!r} is not of the form 'input,kernel->output' with a plain kernel spec"
  lhs, kernel, out = match.groups()
  if len(kernel) != len(kernel_shape) or len(set(kernel)) != len(kernel):
    return f"einsum kernel spec {kernel!r} does not name each of the kernel's {len(kernel_shape)} axes once"
  if summed := [c for c in kernel if c not in lhs and c not in out]:
    return f"einsum {einsum_str!r} sums kernel axes {summed} that are neither in the input nor the output"
  stack = tuple(i for i, c in enumerate(kernel) if c in lhs and c in out)
  inp = tuple(i for i, c in enumerate(kernel) if c in lhs and c not in out)
  outp = tuple(i for i, c in enumerate(kernel) if c in out and c not in lhs)
  if not inp or not outp:
    return f"einsum {einsum_str!r}: the kernel is not a matrix (it has no {'input' if not inp else 'output'} axis)"
  shape = tuple(kernel_shape)
  return MatrixView(shape, shape, stack, outp, inp)


def describe(view: MatrixView) -> str:
  """e.g. '4 × (64 × 192)': the stack shape and each matrix's m × k.

  Args:
    view: the view.

  Returns:
    '<L₀> × ... × (m × k)', or just 'm × k' for a view without stack axes.
  """
  m, k = view.matrix_shape
  stack = " × ".join(str(d) for d in view.stack_shape)
  return f"{stack} × ({m} × {k})" if stack else f"{m} × {k}"


def lead_shape(U, view: MatrixView) -> tuple[int, ...]:
  """The leading (scan/vmap) axes of factors U beyond the view's own stack axes.

  Args:
    U: the U factor (*lead, *L, m, r) (an array or anything ``np.shape`` accepts).
    view: the view U was made with.

  Returns:
    ``lead``: the shape of U's axes before the view's stack axes (empty if there are none).
  """
  return tuple(np.shape(U)[:np.ndim(U) - 2 - len(view.stack)])


def infer_decomposition(U, V, kernel_shape) -> str:
  """The decomposition of an SVD layer, read from the shapes of its factors and of its dense kernel.

  Args:
    U: the layer's U, (m, r).
    V: the layer's V, (k, r).
    kernel_shape: the dense kernel's shape: (in, out) or (kh, kw, c, n).

  Returns:
    'channel' for a 2-D kernel or when U is (n, r) and V (kh·kw·c, r); 'spatial' when U is (kw·n, r) and
    V (kh·c, r) (channel is preferred when both fit, as for kw = 1, where they coincide).

  Raises:
    ValueError: if the factors fit neither decomposition of a 4-D kernel.
  """
  if len(kernel_shape) == 2:
    return "channel"
  kh, kw, c, n = kernel_shape
  if U.shape[0] == n and V.shape[0] == kh * kw * c:
    return "channel"
  if U.shape[0] == kw * n and V.shape[0] == kh * c:
    return "spatial"
  raise ValueError(f"factors U{tuple(U.shape)}, V{tuple(V.shape)} do not fit kernel {tuple(kernel_shape)}")


__all__ = ["MatrixView", "simple_view", "conv_view", "einsum_view", "describe", "lead_shape", "infer_decomposition"]
