"""Data-aware low-rank factors: input statistics of a layer's matrix view, and the rank-k kernel they favour.

A converted layer applies a matrix W (m × k, ``matrix_view.MatrixView``) to input vectors x ∈ ℝᵏ in that view's
column ordering (Dense: the input features; channel-wise conv: the kh·kw·c im2col patch; ...). With the inputs
of N calibration examples as the columns of X (k × N) and C = XXᵀ / N their second moment, a rank-r kernel B
changes the layer's outputs by  ‖(W − B)X‖²_F / N = tr((W − B) C (W − B)ᵀ).

  plain       B minimizes ‖W − B‖_F (Eckart–Young, S = I; what ``MatrixView.factors`` does)
  activation  B minimizes ‖(W − B)D‖_F, D = diag(mean|x_j|^α) (ASVD, Yuan et al. 2023; α = 0.5 by default)
  whitened    B minimizes ‖(W − B)X‖_F, S = C^½ (SVD-LLM, Wang et al. 2024: truncation-aware whitening)

Each is min ‖(W − B)S‖_F over rank-r B, solved without inverting S: with U_r the top-r left singular vectors of
W·S, B = U_r U_rᵀ W attains the optimum (B·S = U_r U_rᵀ W S is the truncated SVD of W·S) for any S, singular or
not, so dead inputs (zero rows of C) never produce NaN; directions the data never excites keep W's own values.
B is re-factored as B = (U_r Q) Σ Rᵀ from the SVD Q Σ Rᵀ of U_rᵀ W (r × k), so U, V are orthonormal and s ≥ 0,
sorted: the factors every regularizer and pruning strategy expects. C^½ is Q_C·√max(λ, 0) from ``numpy.linalg.eigh``
in float64 (negative round-off eigenvalues clipped): a square root S with S·Sᵀ = C, which is all the objective needs.

Output weights A = diag(a) (``LayerStats.output_scale``; e.g. a BatchNorm after the layer scales output j by
a_j = γ_j/√(var_j + ε) at inference) turn the objective into ‖A(W − B)S‖_F, solved the same way on A·W·S with
B = A⁻¹U_r U_rᵀ A W ('plain' ignores them).

The output energy of direction i of factors (U, s, V) is s_i²·v_iᵀ C v_i (its share of E‖Wx‖²): the data-aware
importance ``output_energy`` that pruning may rank directions by instead of s_i².
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.matrix_view import MatrixView
from jaxsvd.core.structure import iter_svd_layers, unboxed
from jaxsvd.core.tree import get_node, replace_nodes
from jaxsvd.core.validate import check_choice, check_nonnegative

METHODS = ("plain", "activation", "whitened")
_DEAD = 1e-12  # activation scales below this fraction of the largest are raised to it
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class LayerStats:
  """One layer's calibration statistics in its matrix view's input space (k = the view's column count).

  ``second_moment`` (*L, k, k) = Σ x xᵀ and ``abs_sum`` (*L, k) = Σ |x| over ``count`` input vectors, float64;
  L: the view's stack axes (conv groups, DenseGeneral batch dims). ``output_scale`` (m,): optional positive weights
  a of the layer's outputs (a BatchNorm after it scales output j by a_j = γ_j/√(var_j + ε)); the data-aware methods
  then minimize ‖diag(a)(W − B)S‖_F, the error after the norm."""
  second_moment: np.ndarray
  abs_sum: np.ndarray
  count: int
  output_scale: np.ndarray | None = None

  @property
  def covariance(self) -> np.ndarray:
    """C = Σ x xᵀ / count (the uncentered second moment)."""
    return self.second_moment / max(self.count, 1)

  @property
  def mean_abs(self) -> np.ndarray:
    """mean |x_j| per input coordinate."""
    return self.abs_sum / max(self.count, 1)

  def __add__(self, other: LayerStats) -> LayerStats:
    return LayerStats(self.second_moment + other.second_moment, self.abs_sum + other.abs_sum,
                      self.count + other.count, self.output_scale)

  def with_output_scale(self, scale) -> LayerStats:
    """These statistics with output weights ``scale`` (m,) (module doc; None: unweighted).

    Args:
      scale: the positive output weights a, or None.

    Returns:
      A new ``LayerStats``.
    """
    return dataclasses.replace(self, output_scale=None if scale is None else np.asarray(scale, np.float64))


def sqrt_psd(c: np.ndarray) -> np.ndarray:
  """A square root S of a symmetric PSD matrix (stack): S·Sᵀ = C, S = Q·diag(√max(λ, 0)) from eigh in float64.

  Args:
    c: (*L, k, k) symmetric (round-off asymmetry is removed by (C + Cᵀ)/2).

  Returns:
    S (*L, k, k), float64; finite for any finite C, singular C included.
  """
  c = np.asarray(c, np.float64)
  lam, q = np.linalg.eigh((c + np.swapaxes(c, -1, -2)) / 2)
  return q * np.sqrt(np.maximum(lam, 0.0))[..., None, :]


def input_scaling(stats: LayerStats | None, method: str, alpha: float = 0.5) -> np.ndarray | None:
  """The S of ``method``'s objective min ‖(W − B)S‖_F (module doc), or None for 'plain' (S = I) or no stats.

  Args:
    stats: the layer's statistics.
    method: one of ``METHODS``.
    alpha: the activation method's exponent α ≥ 0.

  Returns:
    (*L, k, k) float64: C^½ ('whitened'), diag(mean|x|^α) with dead inputs raised to 1e-12·max ('activation').
  """
  check_choice("method", method, METHODS)
  check_nonnegative("alpha", alpha)
  if method == "plain" or stats is None:
    return None
  if method == "whitened":
    return sqrt_psd(stats.covariance)
  d = np.power(np.maximum(stats.mean_abs, 0.0), alpha)
  d = np.maximum(d, _DEAD * np.max(d, axis=-1, keepdims=True) + 1e-300)
  return d[..., :, None] * np.eye(d.shape[-1])


def _positive(a: np.ndarray) -> np.ndarray:
  a = np.abs(np.asarray(a, np.float64))
  return np.maximum(a, _DEAD * np.max(a, axis=-1, keepdims=True) + 1e-300)


def truncate(w: np.ndarray, scaling: np.ndarray | None, rank: int,
             out_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Orthonormal factors of B = A⁻¹U_r U_rᵀ A W, the rank-r minimizer of ‖A(W − B)S‖_F (U_r: top left singular
  vectors of A·W·S, A = diag(``out_scale``); S = I when ``scaling`` is None, A = I when ``out_scale`` is None: both
  None is the plain truncated SVD).

  Args:
    w: (*L, m, k) matrices.
    scaling: S (*L, k, k), or None.
    rank: r ≤ min(m, k).
    out_scale: a (m,) positive output weights (entries below 1e-12·max raised to it), or None.

  Returns:
    U (*L, m, r), s (*L, r) ≥ 0 descending, V (*L, k, r), float64, with U·diag(s)·Vᵀ = B.
  """
  w = np.asarray(w, np.float64)
  if scaling is None and out_scale is None:
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return u[..., :rank], s[..., :rank], np.swapaxes(vt[..., :rank, :], -1, -2)
  a = np.ones(w.shape[-2]) if out_scale is None else _positive(out_scale)
  aw = a[:, None] * w
  u_r = np.linalg.svd(aw if scaling is None else aw @ scaling, full_matrices=False)[0][..., :rank]
  q1, r1 = np.linalg.qr(u_r / a[:, None])  # B = (A⁻¹U_r)(U_rᵀAW) = Q₁·(R₁U_rᵀAW)
  q, s, rt = np.linalg.svd(r1 @ np.swapaxes(u_r, -1, -2) @ aw, full_matrices=False)
  return q1 @ q, s, np.swapaxes(rt, -1, -2)


def spectrum(w: np.ndarray, scaling: np.ndarray | None, out_scale: np.ndarray | None = None) -> np.ndarray:
  """σ(A·W·S) descending: σ_{i>r}² summed is ``truncate``'s error ‖A(W − B)S‖²_F at rank r.

  Args:
    w: (*L, m, k).
    scaling: S (*L, k, k) or None (S = I).
    out_scale: a (m,) (A = diag(a)) or None (A = I).

  Returns:
    (*L, min(m, k)) float64.
  """
  w = np.asarray(w, np.float64)
  if out_scale is not None:
    w = _positive(out_scale)[:, None] * w
  return np.linalg.svd(w if scaling is None else w @ scaling, compute_uv=False)


def output_weights(stats: LayerStats | None, method: str, m: int) -> np.ndarray | None:
  """The output weights ``method`` uses: ``stats.output_scale`` for the data-aware methods when it fits m rows
  (a (n,) scale of a spatial view's (kw·n) rows is tiled kw times), else None.

  Args:
    stats: the layer's statistics, or None.
    method: one of ``METHODS``.
    m: the matrix view's row count.

  Returns:
    (m,) weights, or None.
  """
  if method == "plain" or stats is None or stats.output_scale is None or m % len(stats.output_scale):
    return None
  return np.tile(stats.output_scale, m // len(stats.output_scale))


def layer_factors(kernel, view: MatrixView, rank: int, method: str = "plain", stats: LayerStats | None = None,
                  alpha: float = 0.5):
  """(U, s, V) of ``kernel``'s matrices at ``rank`` by ``method`` (``truncate``, with ``output_weights``; 'plain'
  without ``stats``).

  Args:
    kernel: (*kernel_shape) array (no scan axes).
    view: its ``MatrixView``.
    rank: r ≤ min(m, k).
    method: one of ``METHODS``.
    stats: the layer's ``LayerStats`` in ``view``'s input space.
    alpha: the activation method's α.

  Returns:
    U (*L, m, r), s (*L, r), V (*L, k, r) as jax arrays in ``kernel``'s dtype ('plain': ``view.factors``).
  """
  scaling = input_scaling(stats, method, alpha)
  out_scale = output_weights(stats, method, view.matrix_shape[0])
  if scaling is None and out_scale is None:
    return view.factors(jnp.asarray(kernel), rank)
  w = np.asarray(view.to_matrix(jnp.asarray(kernel)), np.float64)
  U, s, V = truncate(w, scaling, rank, out_scale)
  dtype = jnp.asarray(kernel).dtype
  return tuple(jnp.asarray(a, dtype) for a in (U, s, V))


def output_energy(s, V, stats: LayerStats) -> np.ndarray:
  """Each direction's output energy s_i²·v_iᵀ C v_i (C = ``stats.covariance``).

  Args:
    s: (*L, r) singular values.
    V: (*L, k, r) input factors.
    stats: the layer's statistics.

  Returns:
    (*L, r) float64 ≥ 0.
  """
  v = np.asarray(V, np.float64)
  quad = np.einsum("...ki,...kl,...li->...i", v, stats.covariance, v)
  return np.asarray(s, np.float64) ** 2 * np.maximum(quad, 0.0)


def output_importance(params, stats: Mapping[str, LayerStats]) -> dict[str, np.ndarray]:
  """{SVD layer path: ``output_energy``} for the SVD layers of ``params`` that ``stats`` covers.

  Args:
    params: params with SVD layers ({'U', 's', 'V'} nodes).
    stats: {layer path: ``LayerStats``}.

  Returns:
    {path: (*L, r) importances}, for ``jaxsvd.pruning.rank.prune(..., importance=)``.
  """
  return {path: output_energy(unboxed(node["s"]), unboxed(node["V"]), stats[path])
          for path, node in iter_svd_layers(params) if path in stats}


def _canonical(v, nd: int) -> tuple[int, ...]:
  return (1,) * nd if v is None else (int(v),) * nd if isinstance(v, int) else tuple(int(d) for d in np.ravel(v))


def _padding(padding, nd: int):
  """A conv's padding as ``conv_general_dilated_patches`` takes it, or None for 'CIRCULAR'/'CAUSAL'."""
  if isinstance(padding, str):
    return padding if padding in ("SAME", "VALID") else None
  if isinstance(padding, int):
    return [(padding, padding)] * nd
  return [(int(p), int(p)) if isinstance(p, int) else tuple(int(d) for d in p) for p in padding]


def conv_rows(module, x, view: MatrixView):
  """The vectors a conv's matrices multiply: (*L, N, k) im2col patches (channel view) or column patches (spatial).

  Args:
    module: a linen or NNX conv (read: strides, padding, kernel_dilation, input_dilation, feature_group_count;
      any number of spatial dims).
    x: its input (*batch, *spatial, c).
    view: its ``MatrixView`` (``conv_view``: two out axes mean the 2-D spatial view).

  Returns:
    (g, N, k) for g > 1 groups, else (N, k) rows; None for a padding mode the patches cannot express.
  """
  nd = len(view.kernel_shape) - 2
  kernel, strides = view.kernel_shape[:nd], _canonical(module.strides, nd)
  dilation, pads = _canonical(module.kernel_dilation, nd), _padding(module.padding, nd)
  if pads is None:
    return None
  if len(view.out) == 2:  # spatial: (kh × 1) column patches at every input column
    kernel, strides, dilation = (kernel[0], 1), (strides[0], 1), (dilation[0], 1)
    pads = pads if isinstance(pads, str) else [pads[0], (0, 0)]
  c = x.shape[-1]
  groups = getattr(module, "feature_group_count", 1)
  lhs = jnp.moveaxis(x.reshape(-1, *x.shape[-(nd + 1):]), -1, 1)  # (B, c, *spatial)
  patches = jax.lax.conv_general_dilated_patches(
      lhs, kernel, strides, pads, lhs_dilation=_canonical(module.input_dilation, nd), rhs_dilation=dilation,
      precision=_HIGHEST)  # (B, c·∏kernel, *out): features channel-major
  b, out, size = patches.shape[0], patches.shape[2:], math.prod(kernel)
  p = patches.reshape(b, groups, c // groups, size, *out)
  p = jnp.transpose(p, (1, 0, *range(4, 4 + nd), 3, 2))  # (g, B, *out, ∏kernel, c/g): the kernel's (*k, c/g)
  rows = p.reshape(groups, -1, size * (c // groups))
  return rows if view.stack else rows[0]


def dense_general_rows(x, view: MatrixView, axis, batch_dims=()):
  """(*L, N, k): a DenseGeneral's input with its ``batch_dims`` first (stack), ``axis`` dims last, flattened.

  Args:
    x: the layer's input.
    view: its ``MatrixView`` (stack = batch dims, in = the contracted axes in ``axis`` order).
    axis: the contracted input axes (an int or a sequence).
    batch_dims: the batch (stack) axes, or ().

  Returns:
    (*L, N, k) rows.
  """
  ndim = x.ndim
  axis = tuple(int(a) % ndim for a in np.ravel(axis))
  batch = tuple(int(a) % ndim for a in np.ravel(batch_dims)) if batch_dims else ()
  rest = tuple(a for a in range(ndim) if a not in axis + batch)
  y = jnp.transpose(x, batch + rest + axis)
  return y.reshape(*view.stack_shape, -1, view.matrix_shape[1])


def einsum_rows(x, einsum_str: str, view: MatrixView):
  """(*L, N, k): an Einsum's input vectors in its view's column space (``matrix_view.einsum_view``).

  Input letters that are kernel stack letters come first (L, in the view's stack order), letters only in the input
  and the output are the N positions, contracted letters (input and kernel, not output) are the k columns in the
  view's order; letters only in the input are summed first (the kernel multiplies their sum).

  Args:
    x: the layer's input.
    einsum_str: its 'input,kernel->output' string ('...' allowed in the input and output).
    view: its ``einsum_view``.

  Returns:
    (*L, N, k) rows.
  """
  lhs, rest = einsum_str.replace(" ", "").split(",")
  kernel, out = rest.split("->")
  stack, inp = ("".join(kernel[a] for a in axes) for axes in (view.stack, view.inp))
  batch = "".join(c for c in lhs if c != "." and c not in kernel and c in out)
  ellipsis = "..." if "..." in lhs and "..." in out else ""
  y = jnp.einsum(f"{lhs}->{stack}{ellipsis}{batch}{inp}", x, precision=_HIGHEST)
  return y.reshape(*view.stack_shape, -1, view.matrix_shape[1])


def row_moments(rows):
  """(Σ x xᵀ (*L, k, k), Σ |x| (*L, k), count) of input vectors ``rows`` (*L, N, k), summed in float32 (HIGHEST).

  Args:
    rows: (*L, N, k) input vectors.

  Returns:
    The three sums (count a float32 scalar).
  """
  rows = rows.astype(jnp.float32)
  gram = jnp.einsum("...ni,...nj->...ij", rows, rows, precision=_HIGHEST)
  return gram, jnp.sum(jnp.abs(rows), axis=-2), jnp.asarray(rows.shape[-2], jnp.float32)


def embed_moments(ids, vocab: int):
  """An embedding lookup's moments: its input is one-hot, so Σ x xᵀ = diag(counts), Σ |x| = counts.

  Args:
    ids: integer token ids (any shape).
    vocab: the vocabulary size.

  Returns:
    (diag(counts) (vocab, vocab), counts (vocab,), number of ids), float32.
  """
  counts = jnp.zeros(vocab, jnp.float32).at[jnp.ravel(ids)].add(1.0)
  return jnp.diag(counts), counts, jnp.asarray(ids.size, jnp.float32)


def decompose_params(dense_params, views: Mapping[str, MatrixView], ranks: Mapping[str, int], method: str = "plain",
                     stats: Mapping[str, LayerStats] | None = None, alpha: float = 0.5) -> dict:
  """``dense_params`` with the kernel at each path of ``ranks`` replaced by ``layer_factors`` (U, s, V).

  Args:
    dense_params: unboxed params of the dense model.
    views: {layer path: ``MatrixView``} of its converted layers.
    ranks: {layer path: rank} of the layers to factor.
    method: one of ``METHODS``.
    stats: {layer path: ``LayerStats``}; layers without stats are factored by 'plain'.
    alpha: the activation method's α.

  Returns:
    The params with {U, s, V, other leaves (bias)} at each factored path.

  Raises:
    ValueError: if a path has no kernel in ``dense_params``.
  """
  check_choice("method", method, METHODS)
  new_nodes = {}
  for path, rank in ranks.items():
    try:
      dense = get_node(dense_params, path)
      name = next(k for k in ("kernel", "embedding") if k in dense)
    except (KeyError, TypeError, StopIteration) as err:
      raise ValueError(f"decompose: the dense params have no kernel at layer {path!r}") from err
    U, s, V = layer_factors(dense[name], views[path], rank, method, (stats or {}).get(path), alpha)
    new_nodes[path] = {**{k: v for k, v in dense.items() if k != name}, "U": U, "s": s, "V": V}
  return replace_nodes(dense_params, new_nodes)


__all__ = ["METHODS", "LayerStats", "sqrt_psd", "input_scaling", "truncate", "spectrum", "output_weights",
           "layer_factors", "output_energy", "output_importance", "conv_rows", "dense_general_rows", "einsum_rows",
           "row_moments", "embed_moments", "decompose_params"]
