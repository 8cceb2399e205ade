"""SVD training inside any optax chain: the orthogonality and sparsity terms as a ``GradientTransformation``.

``add_svd_regularization(reg)`` adds the gradient of the regularization to the incoming updates:

    g ← g + ∇θ R(θ),   R(θ) = λo·Σ_layers (‖UᵀU − I‖²_F + ‖VᵀV − I‖²_F)/r² + λs·Σ_layers Ls(s) (+ λ₂·½‖θ‖²)

(``losses.regularization``), so placed first in a chain whose input is the gradient of a user's own loss L, the
rest of the chain sees exactly ∇(L + R), the gradient of the regularized loss — a user keeps their loss and their
training loop and gets SVD training (Yang et al. 2020) by changing the optimizer:

    tx = optax.chain(add_svd_regularization(RegularizerConfig(orthogonality=1.0, sparsity=3e-3)), optax.adam(1e-3))
    updates, opt_state = tx.update(grads_of_my_loss, opt_state, params)

With ``reg.every = N > 1`` (lazy regularization, ``losses.lazy_regularization_grads``) the orthogonality and sparsity
gradients are added with weight N·λ on the updates whose count is a multiple of N, counting from 0 as the train step
does. The transform needs ``params`` in ``update``. Its state is one step counter, so a pruned model's optimizer
state is re-initialized or sliced like any other (``jaxsvd.pruning.opt_state``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxsvd.training.losses import RegularizerConfig, lazy_regularization_grads, regularization


class SVDRegularizationState(NamedTuple):
  """The updates seen so far (the lazy-regularization phase)."""
  count: jax.Array


def add_svd_regularization(reg: RegularizerConfig) -> optax.GradientTransformation:
  """The transform g ← g + ∇θ R(θ) (see the module doc).

  Args:
    reg: the regularization weights (λ = 0 terms are not traced; ``every`` > 1: lazy orthogonality and sparsity).

  Returns:
    An ``optax.GradientTransformation`` whose ``update(updates, state, params)`` requires ``params``.
  """
  step_reg, lazy_reg = reg.split_lazy()

  def init(params) -> SVDRegularizationState:
    del params
    return SVDRegularizationState(count=jnp.zeros([], jnp.int32))

  def update(updates, state: SVDRegularizationState, params=None):
    if params is None:
      raise ValueError("add_svd_regularization needs params: call tx.update(updates, state, params)")
    grads = jax.grad(lambda p: regularization(p, step_reg)[0])(params)
    if lazy_reg is not None:
      lazy_grads, _ = lazy_regularization_grads(params, state.count, lazy_reg)
      grads = jax.tree.map(jnp.add, grads, lazy_grads)
    updates = jax.tree.map(lambda g, r: g + r.astype(g.dtype), updates, grads)
    return updates, SVDRegularizationState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init, update)


__all__ = ["SVDRegularizationState", "add_svd_regularization"]
