"""A trained dense model's variables in SVD form: each converted kernel replaced by its truncated SVD."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxsvd.core.structure import iter_svd_layers
from jaxsvd.core.tree import get_node, replace_nodes
from jaxsvd.linen import conversion
from jaxsvd.linen.svdifylib import SVDModel, traced_init


def decompose(svd_model: SVDModel, dense_variables: Mapping[str, Any], *args, **kwargs) -> dict:
  """``dense_variables`` of ``svd_model.model`` with each converted kernel replaced by its truncated SVD.

  Args:
    svd_model: the SVD model the result is for (its layers and ranks).
    dense_variables: variables of the dense ``svd_model.model`` (boxed or not). Non-param collections (e.g.
      batch_stats) are kept as they are.
    *args: sample inputs (arrays: only their shapes are used).
    **kwargs: sample keyword inputs; non-arrays (e.g. ``train=False``) are passed as they are, not traced.

  Returns:
    The variables (unboxed) with ``U``, ``s``, ``V`` (per matrix, truncated to the layer's rank: Eckart–Young) in
    place of each converted layer's kernel; stacked layers (scan/vmap, groups) per slice. Other params are kept.

  Raises:
    ValueError: if the dense params have no kernel at a converted layer.
  """
  report, abstract = traced_init(svd_model, *args, **kwargs)
  views, target = report.views, conversion.unbox_tree(abstract["params"])
  params = conversion.unbox_tree(dense_variables["params"])
  new_nodes = {}
  for path, node in iter_svd_layers(target):
    try:
      dense = get_node(params, path)
      name = next(k for k in ("kernel", "embedding") if k in dense)
    except (KeyError, TypeError, StopIteration) as err:
      raise ValueError(f"decompose: the dense params have no kernel at layer {path!r}") from err
    U, s, V = views[path].factors(dense[name], node["s"].shape[-1])
    new_nodes[path] = {**{k: v for k, v in dense.items() if k != name}, "U": U, "s": s, "V": V}
  variables = conversion.unbox_tree(dict(dense_variables))
  return {**variables, "params": replace_nodes(params, new_nodes)}


__all__ = ["decompose"]
