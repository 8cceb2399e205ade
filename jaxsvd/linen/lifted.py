"""Calibration statistics of linen layers under lifted transforms (``nn.scan``, ``nn.vmap``, ``nn.remat``, nested).

A layer under a lifted transform runs in a trace of its own (the scan body, the vmapped function, the checkpointed
function), so its input's moments cannot be kept aside and read after the model's apply. A functional way out (the
transform's outputs, or a variable collection) is not open to a calibration pass on an unchanged model: the
transform's wrapper call is not interceptable (flax copies the ``method_handler_wrapped`` mark onto it, so
``nn.intercept_methods`` sees only the body's calls, inside the transform), and a collection leaves the body only
when the user's ``variable_axes`` names it. So each call hands its moments to the host through
``jax.debug.callback`` (an effect: kept under ``jax.jit``, run once per scan iteration and once per vmapped index,
not repeated by ``nn.remat`` on a forward pass; ``io_callback``'s effect is refused by the partial evaluation that
``nn.remat`` inside ``nn.scan`` runs; ``collect`` waits on ``jax.effects_barrier``):

  device   per call: the moments of the input in the layer's matrix view (its kind's ``moments``: (*S, k, k),
           (*S, k), count), and a fingerprint of the kernel slice the call multiplies: f = vec(W_slice)ᵀ P (4
           numbers, P_jc = cos((j + 1)(c + 1)/√2), a fixed projection)
  host     ``Slices``: the fingerprint picks the slice of the stacked kernel (L, *kernel) in the variables whose
           own fingerprint is nearest, so the order in which callbacks arrive (a vmap of a scan runs its slices in
           neither stacking order) does not matter; slices with the same kernel take turns. Each slice's Σ x xᵀ,
           Σ |x| and count are summed in float64: ``LayerStats`` with second_moment (L, *S, k, k)

The statistics are those of each slice's own input, the vectors its kernel slice multiplies, so the whitened /
activation decomposition of slice ℓ uses C_ℓ. A callback repeated on several devices (replicated operands) repeats
the sums and the count alike, so C_ℓ = Σ x xᵀ / n_ℓ is unchanged; several processes are not verified.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsvd.core.calibration import LayerStats

_WIDTH = 4  # fingerprint length


def projection(size: int, xp=np):
  """P (size, 4): P_jc = cos((j + 1)(c + 1)/√2), the fixed fingerprint projection.

  Args:
    size: the kernel slice's number of entries.
    xp: ``numpy`` (float64, on the host) or ``jax.numpy`` (float32, traced).

  Returns:
    P.
  """
  j = xp.arange(1, size + 1, dtype=xp.float64 if xp is np else jnp.float32)[:, None]
  c = xp.arange(1, _WIDTH + 1, dtype=j.dtype)[None, :]
  return xp.cos(j * c / math.sqrt(2.0))


def fingerprint(kernel):
  """vec(kernel)ᵀ P (4,), float32, traced (module doc).

  Args:
    kernel: one kernel slice (any shape).

  Returns:
    The fingerprint.
  """
  flat = jnp.ravel(kernel).astype(jnp.float32)
  return jnp.dot(flat, projection(flat.size, jnp), precision=jax.lax.Precision.HIGHEST)


def send(sink: list, path: str, moments: tuple, kernel) -> None:
  """Hands one lifted call's ``moments`` and its kernel slice's fingerprint to ``sink`` on the host (an
  ``io_callback``: module doc).

  Args:
    sink: the host list that receives (path, fingerprint, gram, abs_sum, count).
    path: the layer's path.
    moments: (gram, abs_sum, count), traced.
    kernel: the kernel slice the call multiplies, traced.
  """
  jax.debug.callback(functools.partial(_receive, sink, path), fingerprint(kernel), *moments)


def _receive(sink: list, path: str, print_, gram, abs_sum, count):
  sink.append((path, *(np.asarray(v, np.float64) for v in (print_, gram, abs_sum, count))))


class Slices:
  """Host accumulation of lifted calls' moments, per slice of each layer's stacked kernel (module doc).

  Args:
    kernel_of: ``kernel_of(path)``: the layer's kernel in the variables, (*lead, *kernel_shape), or None; read only
      for the layers that send moments (a layer in the model's own trace is never copied to the host here).
    views: {layer path: ``MatrixView``} (``kernel_shape``: one slice's).
  """

  def __init__(self, kernel_of, views):
    self.kernel_of, self.views = kernel_of, views
    self.lead, self.prints, self.sums, self.turns = {}, {}, {}, {}

  def _fingerprints(self, path: str) -> bool:
    """Reads ``path``'s stacked kernel once: its lead shape and each slice's fingerprint; False without one."""
    if path not in self.prints:
      kernel = self.kernel_of(path) if path in self.views else None
      if kernel is None:
        return False
      shape = np.shape(kernel)
      lead = tuple(shape[:len(shape) - len(self.views[path].kernel_shape)])
      flat = np.asarray(kernel, np.float64).reshape(math.prod(lead), -1)
      self.lead[path], self.prints[path] = lead, flat @ projection(flat.shape[1])
    return True

  def slice_of(self, path: str, print_) -> int:
    """The flat slice index whose kernel fingerprint is nearest ``print_`` (equally near slices take turns)."""
    dist = np.linalg.norm(self.prints[path] - print_, axis=1)
    tied = np.flatnonzero(dist <= dist.min() + 1e-6 * (1.0 + np.linalg.norm(print_)))
    turn = self.turns.get((path, tuple(tied)), 0)
    self.turns[(path, tuple(tied))] = turn + 1
    return int(tied[turn % len(tied)])

  def add(self, received: list) -> None:
    """Adds the (path, fingerprint, gram, abs_sum, count) entries of ``received``."""
    for path, print_, gram, abs_sum, count in received:
      if not self._fingerprints(path):
        continue
      n = len(self.prints[path])
      sums = self.sums.setdefault(path, [np.zeros((n, *gram.shape)), np.zeros((n, *abs_sum.shape)), np.zeros(n)])
      i = self.slice_of(path, print_)
      sums[0][i] += gram
      sums[1][i] += abs_sum
      sums[2][i] += count

  def stats(self) -> dict[str, LayerStats]:
    """{path: ``LayerStats``} with second_moment (*lead, *S, k, k): each slice's sums, rescaled to the largest
    count so that every slice's ``covariance`` is its own Σ x xᵀ / n_ℓ (the counts agree unless a slice was never
    reached; such a slice gets zeros)."""
    out = {}
    for path, (gram, abs_sum, count) in self.sums.items():
      n = float(count.max())
      scale = np.where(count > 0, n / np.maximum(count, 1.0), 0.0)
      lead = self.lead[path]
      out[path] = LayerStats(_rescaled(gram, scale, lead), _rescaled(abs_sum, scale, lead), round(n))
    return out


def _rescaled(sums: np.ndarray, scale: np.ndarray, lead: tuple) -> np.ndarray:
  """(n_slices, ...) sums times each slice's scale, reshaped to (*lead, ...)."""
  return (sums * scale.reshape(-1, *(1,) * (sums.ndim - 1))).reshape(*lead, *sums.shape[1:])


__all__ = ["Slices", "fingerprint", "projection", "send"]
