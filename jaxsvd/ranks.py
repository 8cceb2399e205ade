"""SVD-layer discovery in any params pytree, and ranks as data.

An SVD layer is found by structure, not by name: any mapping node holding leaves
`U` (m, r), `s` (r,) and `V` (k, r) with a shared r. Its path is the '/'-joined
chain of keys from the root (e.g. ``'stage1_block0/conv1'``). ``ranks(params)``
reads the architecture back from the shapes of ``s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator

PathTree = Any


def _is_svd_node(node: Any) -> bool:
  if not isinstance(node, Mapping) or not {"U", "s", "V"} <= set(node.keys()):
    return False
  u, s, v = node["U"], node["s"], node["V"]
  shapes = [getattr(x, "shape", None) for x in (u, s, v)]
  if any(sh is None for sh in shapes):
    return False
  (us, ss, vs) = shapes
  return len(us) == 2 and len(ss) == 1 and len(vs) == 2 and us[1] == ss[0] == vs[1]


def iter_svd_layers(params: PathTree, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Mapping]]:
  """Yields (path, node) for every SVD layer in ``params`` in deterministic (sorted) order."""
  if _is_svd_node(params):
    yield "/".join(prefix), params
    return
  if isinstance(params, Mapping):
    for key in sorted(params.keys(), key=str):
      yield from iter_svd_layers(params[key], prefix + (str(key),))


def svd_layers(params: PathTree) -> dict[str, Mapping]:
  """All SVD layers of ``params`` as {path: {'U', 's', 'V', ...}}."""
  return dict(iter_svd_layers(params))


def ranks(params: PathTree) -> dict[str, int]:
  """The architecture read back from params: {layer path: rank}."""
  return {path: int(node["s"].shape[0]) for path, node in iter_svd_layers(params)}


def total_rank(rank_map: Mapping[str, int]) -> int:
  return int(sum(rank_map.values()))


def path_str(keypath) -> str:
  """'/'-joined keys of a ``jax.tree_util`` key path, the same form as the layer paths here."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in keypath)


def get_node(tree: PathTree, path: str) -> Mapping:
  node = tree
  for key in path.split("/") if path else []:
    node = node[key]
  return node


def replace_nodes(tree: PathTree, new_nodes: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> PathTree:
  """Returns a copy of ``tree`` (as plain dicts) with the nodes at ``new_nodes`` paths replaced."""
  path = "/".join(prefix)
  if path in new_nodes:
    return new_nodes[path]
  if isinstance(tree, Mapping):
    return {k: replace_nodes(v, new_nodes, prefix + (str(k),)) for k, v in tree.items()}
  return tree


def validate_ranks(rank_map: Mapping[str, int]) -> None:
  for path, r in rank_map.items():
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
      raise ValueError(f"ranks[{path!r}] must be an int >= 1, got {r!r}")
