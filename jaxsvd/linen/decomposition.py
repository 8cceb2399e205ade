"""A trained dense model's variables in SVD form: each converted kernel replaced by its rank-r factors.

``method`` (``jaxsvd.core.calibration``): 'plain' truncated SVD (min ‖W − W_r‖_F), 'activation' (ASVD: columns
scaled by mean|x|^α) or 'whitened' (SVD-LLM: min ‖(W − W_r)X‖_F on calibration inputs X); the data-aware methods
take the statistics of ``jaxsvd.linen.calibration.collect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax.core import meta

from jaxsvd.core import calibration
from jaxsvd.core.structure import iter_svd_layers
from jaxsvd.linen import conversion
from jaxsvd.linen.svdifylib import SVDModel, traced_init


def decompose(svd_model: SVDModel, dense_variables: Mapping[str, Any], *args, method: str = "plain",
              stats: Mapping[str, calibration.LayerStats] | None = None, alpha: float = 0.5, **kwargs) -> dict:
  """``dense_variables`` of ``svd_model.model`` with each converted kernel replaced by its rank-r factors.

  Args:
    svd_model: the SVD model the result is for (its layers and ranks).
    dense_variables: variables of the dense ``svd_model.model`` (boxed or not). Non-param collections (e.g.
      batch_stats) are kept as they are. Kernels sharded on a mesh give factors sharded like them (U by the
      kernel's output names, V by its input names; logical names through the rules in flax's context).
    *args: sample inputs (arrays: only their shapes are used).
    method: 'plain' (default), 'activation' or 'whitened' (``calibration.METHODS``).
    stats: {layer path: ``calibration.LayerStats``} (``jaxsvd.linen.calibration.collect``), needed by the
      data-aware methods; a layer without stats is factored by 'plain'.
    alpha: the activation method's exponent α.
    **kwargs: sample keyword inputs; non-arrays (e.g. ``train=False``) are passed as they are, not traced.

  Returns:
    The variables (unboxed) with ``U``, ``s``, ``V`` (per matrix, at the layer's rank: 'plain' is Eckart–Young; U
    and V orthonormal for every method) in place of each converted layer's kernel; stacked layers (scan/vmap,
    groups) per slice. Other params are kept.

  Raises:
    ValueError: if the dense params have no kernel at a converted layer, or ``method`` is unknown.
  """
  report, abstract = traced_init(svd_model, *args, **kwargs)
  target = conversion.unbox_tree(abstract["params"])
  ranks = {path: node["s"].shape[-1] for path, node in iter_svd_layers(target)}
  params = conversion.unbox_tree(dense_variables["params"])
  new_params = calibration.decompose_params(params, report.views, ranks, method, stats, alpha)
  if (mesh := _mesh_of(params)) is not None:
    new_params = _placed_as_named(new_params, abstract["params"], mesh)
  variables = conversion.unbox_tree(dict(dense_variables))
  return {**variables, "params": new_params}


def _mesh_of(tree) -> jax.sharding.Mesh | None:
  """The mesh of the first leaf of ``tree`` placed with a ``NamedSharding``, or None."""
  shardings = (getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(tree))
  return next((s.mesh for s in shardings if isinstance(s, jax.sharding.NamedSharding)), None)


def _placed_as_named(params, boxed, mesh: jax.sharding.Mesh):
  """Each leaf of ``params`` placed on ``mesh`` as its partitioning box in ``boxed`` names it (logical names through
  the rules in flax's context); unboxed leaves as they are. The factors of sharded kernels come out of the SVD
  sharded however XLA chose: this shards U, s and V like their kernel."""

  def place(box, leaf):
    if not isinstance(box, meta.AxisMetadata):
      return leaf
    if isinstance(box, nn.LogicallyPartitioned):
      spec = nn.logical_to_mesh_axes(box.names)
    else:
      spec = box.get_partition_spec()
    return jax.device_put(leaf, jax.sharding.NamedSharding(mesh, spec))

  return jax.tree.map(place, boxed, params, is_leaf=lambda x: isinstance(x, meta.AxisMetadata))


__all__ = ["decompose"]
