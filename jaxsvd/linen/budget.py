"""The MACs counter of the budget search (``jaxsvd.pruning.budget.MacsCounter``) for linen models.

Two ``flops.count`` traces: the dense model and the SVD model with every SVD layer at rank 1; an SVD layer at rank r
then costs min(dense, r·(MACs at r = 1)) (its cheaper execution; the factored one is linear in r), every other layer
what it costs at rank 1. ``architecture_macs`` is registered as 'macs/zoo' (``jaxsvd.core.registry``), so
``MacsCounter.for_architecture`` counts a zoo record without ``pruning`` importing linen.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from jaxsvd.core import registry
from jaxsvd.core.record import Architecture
from jaxsvd.linen import flops
from jaxsvd.pruning.budget import MacsCounter


def macs_counter(dense_model, rank_one_model, paths, input_shape: tuple[int, ...], input_dtype: Any = jnp.float32,
                 **call_kwargs: Any) -> MacsCounter:
  """MACs per example of a linen SVD model at given ranks, from its dense model and its model at rank 1.

  Args:
    dense_model: the model with every SVD layer dense.
    rank_one_model: the SVD model with every layer of ``paths`` at rank 1 (a zoo model, or an ``SVDModel``).
    paths: the SVD layers' paths.
    input_shape: one example's shape without the batch dimension.
    input_dtype: the input's dtype.
    **call_kwargs: static call arguments (e.g. ``train=False``).

  Returns:
    The ``MacsCounter``: other layers + Σ min(dense_l, r_l·MACs_l(r = 1)); dense: Σ over the dense model.
  """
  dense = flops.count(dense_model, input_shape, input_dtype, **call_kwargs).layers
  ones = flops.count(rank_one_model, input_shape, input_dtype, **call_kwargs).layers
  return MacsCounter.from_layers({p: (dense[p].macs, ones[p].macs) for p in paths},
                                 fixed=sum(c.macs for p, c in ones.items() if p not in paths),
                                 dense=sum(c.macs for c in dense.values()))


def architecture_macs(architecture: Architecture, paths) -> MacsCounter:
  """The counter of a zoo record: ``macs_counter`` of ``architecture.dense()`` and the record at rank 1.

  Args:
    architecture: the record of an SVD model.
    paths: its SVD layers' paths (e.g. the keys of ``structure.ranks(params)``).

  Returns:
    The ``MacsCounter``: MACs = Σ_other layers + Σ_SVD min(dense_l, r_l · MACs_l(r = 1)).
  """
  rank_one = architecture.replace(ranks={p: 1 for p in paths})
  return macs_counter(architecture.dense().build_model(), rank_one.build_model(), paths,
                      tuple(architecture.input_shape))


registry.register("macs/zoo", architecture_macs)


__all__ = ["macs_counter", "architecture_macs"]
