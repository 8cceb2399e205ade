"""Paths into pytrees: the one place where a ``jax.tree_util`` key path becomes a string.

Every layer, leaf and mask in jaxsvd is named by the '/'-joined chain of keys from the root of the params
(e.g. ``'stage1_block0/conv1/U'``); the same strings are the keys of ranks, widths and masks in checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax

PyTree = Any


def key_str(key) -> str:
  """One key of a key path as a string (``DictKey.key``, ``GetAttrKey.name``, ``SequenceKey.idx``).

  Args:
    key: one entry of a ``jax.tree_util`` key path.

  Returns:
    ``str`` of its ``key``, ``name`` or ``idx`` attribute (the first it has), else ``str(key)``.
  """
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(keypath) -> str:
  """'/'-joined keys of a ``jax.tree_util`` key path.

  Args:
    keypath: a key path, as yielded by ``jax.tree_util.tree_flatten_with_path``.

  Returns:
    e.g. ``'block/conv/U'``.
  """
  return "/".join(key_str(k) for k in keypath)


def trailing_dict_path(keypath) -> str | None:
  """The trailing run of dict keys of a key path, or None if it does not end in a dict key.

  An optimizer-state leaf (e.g. Adam's ``mu`` inside a chain's tuple of states) shadows the param whose
  path is this suffix.

  Args:
    keypath: a ``jax.tree_util`` key path.

  Returns:
    The '/'-joined keys of the longest run of ``DictKey`` entries at its end (an NNX ``Variable``'s trailing
    ``.value`` attribute skipped: an ``nnx.State`` leaf is named by its dict keys), or None if the last key is not one.
  """
  names = []
  if keypath and keypath[-1] == jax.tree_util.GetAttrKey("value"):
    keypath = keypath[:-1]
  for key in reversed(keypath):
    if not isinstance(key, jax.tree_util.DictKey):
      break
    names.append(str(key.key))
  return "/".join(reversed(names)) or None


def leaves_by_path(tree: PyTree, is_leaf=None) -> dict[str, Any]:
  """{'/'-joined path: leaf} of every leaf of ``tree``.

  Args:
    tree: any pytree.
    is_leaf: optional predicate passed to ``jax.tree_util.tree_flatten_with_path``.

  Returns:
    A dict in flattening order.
  """
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {path_str(kp): leaf for kp, leaf in flat}


def map_with_path(fn, tree: PyTree, *rest: PyTree) -> PyTree:
  """``jax.tree_util.tree_map_with_path`` with the path given to ``fn`` as its string.

  Args:
    fn: called as ``fn(path, leaf, *rest_leaves)`` with ``path`` the leaf's '/'-joined path.
    tree: the pytree whose structure is mapped.
    *rest: more pytrees with the structure of ``tree``; their leaves are passed after ``tree``'s.

  Returns:
    A pytree like ``tree`` of ``fn``'s results.
  """
  return jax.tree_util.tree_map_with_path(lambda kp, *leaves: fn(path_str(kp), *leaves), tree, *rest)


def get_node(tree: PyTree, path: str) -> Any:
  """The subtree of a nested mapping at ``path`` ('' is the root); KeyError if absent.

  Args:
    tree: nested mappings.
    path: '/'-joined keys from the root of ``tree``.

  Returns:
    ``tree[k1][k2]...`` for the keys of ``path``.

  Raises:
    KeyError: if a key of ``path`` is absent (TypeError if a node on the way is not subscriptable by str).
  """
  node = tree
  for key in path.split("/") if path else []:
    node = node[key]
  return node


def replace_nodes(tree: PyTree, new_nodes: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> PyTree:
  """A copy of ``tree`` (nested mappings become dicts) with the nodes at ``new_nodes``' paths replaced.

  Args:
    tree: nested mappings of arrays (e.g. flax params).
    new_nodes: {path: replacement subtree}.
    prefix: the path of ``tree`` itself (for recursion).

  Returns:
    The new tree; ``tree`` is not modified. Paths of ``new_nodes`` that ``tree`` lacks are ignored; replaced
    nodes are not searched further.
  """
  path = "/".join(prefix)
  if path in new_nodes:
    return new_nodes[path]
  if isinstance(tree, Mapping):
    return {k: replace_nodes(v, new_nodes, prefix + (str(k),)) for k, v in tree.items()}
  return tree


__all__ = ["key_str", "path_str", "trailing_dict_path", "leaves_by_path", "map_with_path", "get_node", "replace_nodes"]
