"""Layers found in params by structure, never by name, and the architecture read back from their shapes.

  SVD layer:   a mapping holding leaves ``U`` (*L, m, r), ``s`` (*L, r), ``V`` (*L, k, r) with one shared r and
               the same leading stack shape L (empty for a plain layer; (layers,) under ``nn.scan``/``nn.vmap``;
               (groups,) for a grouped conv; both when stacked twice). A stacked layer is one layer of one rank:
               every slice U[l]·diag(s[l])·V[l]ᵀ is its own matrix, all of rank r (a scan needs equal shapes).
  norm layer:  a mapping holding 1-D leaves ``scale`` and ``bias`` of one size (BatchNorm, LayerNorm):
               its γ is what network slimming penalizes and thresholds.

A layer's path is the '/'-joined chain of keys from the root (``jaxsvd.core.tree``), e.g.
``'stage1_block0/conv1'``. ``ranks(params)`` and ``norm_widths(params)`` are the architecture as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

from flax.core.meta import AxisMetadata

PyTree = Any


def unboxed(x: Any) -> Any:
  """``x`` without a flax metadata box (``nn.Partitioned``, ``nn.LogicallyPartitioned``): its ``value``, else ``x``.

  Args:
    x: a leaf, boxed in a flax ``AxisMetadata`` or not.

  Returns:
    ``x.value`` if ``x`` is an ``AxisMetadata`` box, else ``x`` itself.
  """
  return x.value if isinstance(x, AxisMetadata) else x


def _shape(x) -> tuple | None:
  shape = getattr(unboxed(x), "shape", None)
  return None if shape is None else tuple(shape)


def is_svd_node(node: Any) -> bool:
  """Whether ``node`` is an SVD layer's params: {'U': (*L, m, r), 's': (*L, r), 'V': (*L, k, r), ...}.

  Args:
    node: any pytree node (leaves may be boxed, e.g. ``nn.LogicallyPartitioned``).

  Returns:
    True iff ``node`` is a mapping with shaped leaves 'U', 's', 'V' of one leading stack shape L (possibly empty),
    U and V matrices beyond it, sharing one r.
  """
  if not isinstance(node, Mapping) or not {"U", "s", "V"} <= set(node.keys()):
    return False
  us, ss, vs = (_shape(node[k]) for k in ("U", "s", "V"))
  if us is None or ss is None or vs is None or len(ss) < 1:
    return False
  lead = ss[:-1]
  return us[:-2] == lead == vs[:-2] and len(us) == len(vs) == len(ss) + 1 and us[-1] == ss[-1] == vs[-1]


def stack_shape(node: Mapping) -> tuple[int, ...]:
  """The leading stack shape L of an SVD layer's params (``()`` for a plain layer).

  Args:
    node: an SVD layer's params (``is_svd_node``).

  Returns:
    ``s.shape[:-1]``.
  """
  return _shape(node["s"])[:-1]


def is_norm_node(node: Any) -> bool:
  """Whether ``node`` is a normalization layer's params: 1-D 'scale' and 'bias' of one size.

  Args:
    node: any pytree node.

  Returns:
    True iff ``node`` is a mapping with 'scale' and 'bias' leaves of the same 1-D shape.
  """
  if not isinstance(node, Mapping) or "scale" not in node or "bias" not in node:
    return False
  scale, bias = _shape(node["scale"]), _shape(node["bias"])
  return scale is not None and len(scale) == 1 and scale == bias


def iter_svd_layers(params: PyTree, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Mapping]]:
  """Yields (path, node) for every SVD layer in ``params``, in sorted (deterministic) order.

  Only nested mappings are searched (keys sorted by ``str``); an SVD node is not searched further.

  Args:
    params: a params pytree.
    prefix: the path of ``params`` itself (for recursion).

  Yields:
    (the layer's '/'-joined path, its node).
  """
  if is_svd_node(params):
    yield "/".join(prefix), params
    return
  if isinstance(params, Mapping):
    for key in sorted(params.keys(), key=str):
      yield from iter_svd_layers(params[key], prefix + (str(key),))


def svd_layers(params: PyTree) -> dict[str, Mapping]:
  """All SVD layers of ``params`` as {path: {'U', 's', 'V', ...}}.

  Args:
    params: a params pytree.

  Returns:
    {layer path: node}, in the order of ``iter_svd_layers``.
  """
  return dict(iter_svd_layers(params))


def norm_layers(params: PyTree, prefix: tuple[str, ...] = ()) -> dict[str, Mapping]:
  """All normalization layers of ``params`` as {path: {'scale', 'bias', ...}}, in sorted order.

  Args:
    params: a params pytree (nested mappings are searched, keys sorted by ``str``).
    prefix: the path of ``params`` itself (for recursion).

  Returns:
    {layer path: node} of every node for which ``is_norm_node`` holds.
  """
  out = {}
  if isinstance(params, Mapping):
    if is_norm_node(params):
      out["/".join(prefix)] = params
    for key in sorted(params, key=str):
      out.update(norm_layers(params[key], (*prefix, str(key))))
  return out


def ranks(params: PyTree) -> dict[str, int]:
  """The SVD architecture read back from params.

  Args:
    params: a params pytree (nested mappings; arrays or ``jax.ShapeDtypeStruct`` leaves).

  Returns:
    {SVD layer path: rank r}.
  """
  return {path: int(_shape(node["s"])[-1]) for path, node in iter_svd_layers(params)}


def stack_shapes(params: PyTree) -> dict[str, tuple[int, ...]]:
  """{SVD layer path: leading stack shape} of the stacked SVD layers (``nn.scan``/``nn.vmap``, grouped convs).

  Args:
    params: a params pytree (arrays or ``jax.ShapeDtypeStruct`` leaves, boxed or not).

  Returns:
    {layer path: L} for every SVD layer whose L is not empty.
  """
  return {path: stack_shape(node) for path, node in iter_svd_layers(params) if stack_shape(node)}


def norm_widths(params: PyTree) -> dict[str, int]:
  """{normalization layer path: channels} read back from the shapes of ``scale``.

  Args:
    params: a params pytree (arrays or ``jax.ShapeDtypeStruct`` leaves).

  Returns:
    {norm layer path: len(scale)}.
  """
  return {path: int(_shape(node["scale"])[0]) for path, node in norm_layers(params).items()}


def norm_scales(params: PyTree) -> dict[str, bool]:
  """Whole-leaf masks {'<norm layer>/scale': True} selecting every γ (what network slimming's L1 penalizes).

  Args:
    params: a params pytree (nested mappings).

  Returns:
    {'<norm layer path>/scale': True} for every norm layer found by ``norm_layers``.
  """
  return {f"{path}/scale": True for path in norm_layers(params)}


def total_rank(rank_map: Mapping[str, int]) -> int:
  """Σ ranks of a {path: rank} map.

  Args:
    rank_map: {layer path: rank}, e.g. from ``ranks``.

  Returns:
    The sum of its values, as an int.
  """
  return int(sum(rank_map.values()))


def check_rank(field: str, rank: Any, allow_none: bool = False) -> None:
  """One-line ValueError naming ``field`` unless ``rank`` is an int ≥ 1 (or None when ``allow_none``).

  Args:
    field: the name put in the error, e.g. ``"svd.default_rank"``.
    rank: the value to check (bools are rejected).
    allow_none: whether None (full rank) is accepted.

  Returns:
    None.

  Raises:
    ValueError: if ``rank`` is not an int ≥ 1 (nor None when allowed).
  """
  if allow_none and rank is None:
    return
  if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
    expected = "None (full rank) or an int >= 1" if allow_none else "an int >= 1"
    raise ValueError(f"{field} must be {expected}, got {rank!r}")


def validate_ranks(rank_map: Mapping[str, int], field: str = "ranks") -> None:
  """Checks every rank of a {path: rank} map (``field[path]`` named in the error).

  Args:
    rank_map: {layer path: rank}.
    field: the map's name in the error.

  Returns:
    None.

  Raises:
    ValueError: at the first rank that is not an int ≥ 1 (see ``check_rank``).
  """
  for path, r in rank_map.items():
    check_rank(f"{field}[{path!r}]", r)


__all__ = ["unboxed", "is_svd_node", "stack_shape", "is_norm_node", "iter_svd_layers", "svd_layers", "norm_layers",
           "ranks", "stack_shapes", "norm_widths", "norm_scales", "total_rank", "check_rank", "validate_ranks"]
