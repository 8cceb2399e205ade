"""``nnx.Embed`` → ``EmbedSVD``: the embedding E (vocab, f) as the Dense kernel of one-hot ids, M = Eᵀ (f × vocab);
statistics: token counts (the lookup's one-hot input)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx

from jaxsvd.core import calibration
from jaxsvd.core.matrix_view import simple_view
from jaxsvd.nnx import layers
from jaxsvd.nnx.kinds.base import Kind, register


class EmbedKind(Kind):
  """``nnx.Embed``: the lookup and ``attend`` (tied logits) share one set of factors."""

  layer, svd_layer, kernel_name = nnx.Embed, layers.EmbedSVD, "embedding"

  def kernel_shape(self, module) -> tuple[int, ...]:
    """(num_embeddings, features)."""
    return (module.num_embeddings, module.features)

  def view(self, module, decomposition: str):
    """``simple_view((vocab, features), 0, 1)``."""
    return simple_view(tuple(module.embedding.shape), 0, 1)

  def to_svd(self, module, rank, decomposition, mode, sigma):
    """An ``EmbedSVD`` (``Kind.to_svd``)."""
    return layers.EmbedSVD(module.num_embeddings, module.features, rank=rank, mode=mode, sigma=sigma,
                           dtype=module.dtype, param_dtype=module.embedding.dtype, embedding=module.embedding[...],
                           embedding_metadata=module.embedding.get_metadata())

  def moments(self, module, x, view):
    """diag(token counts), counts, number of ids (``calibration.embed_moments``)."""
    return calibration.embed_moments(x, view.matrix_shape[1])

  def macs(self, module, x_shape, rank=None):
    """A lookup: 0 dense; factored, V[ids]·diag(s)·Uᵀ: r·features per id."""
    r = min(module.num_embeddings, module.features) if rank is None else rank
    return {"dense": 0, "factored": math.prod(x_shape) * r * module.features}

  def probe(self, module) -> jax.ShapeDtypeStruct:
    """One integer id."""
    return jax.ShapeDtypeStruct((1,), np.int32)


KIND = register(EmbedKind())

__all__ = ["EmbedKind", "KIND"]
