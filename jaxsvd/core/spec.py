"""``SVDSpec``: how a model uses SVD layers (decomposition, execution mode, ranks, sigma, init), as frozen data."""

from __future__ import annotations

import dataclasses
from typing import Mapping

from jaxsvd.core.structure import check_rank, validate_ranks
from jaxsvd.core.svd import DECOMPOSITIONS, INITS, MODES, SIGMAS
from jaxsvd.core.validate import check_choice


@dataclasses.dataclass(frozen=True)
class SVDSpec:
  """How a zoo model uses SVD layers: the decomposition, the execution mode, the ranks (frozen {layer path: rank};
  other layers get ``default_rank``, None = full rank), and whether the first conv and the classifier stay dense.
  ``sigma`` ('signed' | 'abs') and ``init`` ('svd_of_he' | 'official') are the SVD layers' (``jaxsvd.core.svd``);
  ``dense_strided`` keeps every conv with a stride > 1 dense (the official ``--svd_s1``).
  Invalid fields raise a ``ValueError`` on construction.
  """
  decomposition: str = "channel"
  mode: str = "auto"
  ranks: tuple[tuple[str, int], ...] = ()  # frozen {path: rank}; missing paths use default_rank
  default_rank: int | None = None  # None = full rank (fixed low-rank baselines set e.g. 8)
  dense_first: bool = True  # keep the first conv dense
  dense_last: bool = True  # keep the classifier dense
  sigma: str = "signed"  # records without it (older checkpoints) read as 'signed'
  init: str = "svd_of_he"
  dense_strided: bool = False

  def __post_init__(self):
    check_choice("svd.decomposition", self.decomposition, DECOMPOSITIONS)
    check_choice("svd.mode", self.mode, MODES)
    check_choice("svd.sigma", self.sigma, SIGMAS)
    check_choice("svd.init", self.init, INITS)
    validate_ranks(dict(self.ranks))
    check_rank("svd.default_rank", self.default_rank, allow_none=True)

  def rank_of(self, path: str) -> int | None:
    """The rank of the layer at ``path``.

    Args:
      path: the '/'-joined layer path.

    Returns:
      Its rank in ``ranks``, else ``default_rank`` (None = full rank).
    """
    return dict(self.ranks).get(path, self.default_rank)

  def with_ranks(self, ranks: Mapping[str, int]) -> "SVDSpec":
    """This spec with ``ranks`` replacing all its ranks.

    Args:
      ranks: {layer path: rank}.

    Returns:
      A new ``SVDSpec``.

    Raises:
      ValueError: if a rank, converted to int, is below 1.
    """
    return dataclasses.replace(self, ranks=tuple(sorted((str(k), int(v)) for k, v in ranks.items())))

  def with_mode(self, mode: str) -> "SVDSpec":
    """This spec with execution mode ``mode``.

    Args:
      mode: one of ``jaxsvd.core.svd.MODES``.

    Returns:
      A new ``SVDSpec``.

    Raises:
      ValueError: if ``mode`` is not one of ``jaxsvd.core.svd.MODES``.
    """
    return dataclasses.replace(self, mode=mode)

  def to_dict(self) -> dict:
    """The spec as a plain dict, ``ranks`` as a {path: rank} dict (``from_dict`` reads it back)."""
    d = dataclasses.asdict(self)
    d["ranks"] = dict(self.ranks)
    return d

  @classmethod
  def from_dict(cls, d: Mapping | None) -> "SVDSpec | None":
    """The spec that ``to_dict`` wrote.

    Args:
      d: the dict, or None.

    Returns:
      The ``SVDSpec``, or None when ``d`` is None.

    Raises:
      ValueError: if a field is invalid.
      TypeError: if ``d`` has a key that is not a field.
    """
    if d is None:
      return None
    d = dict(d)
    d["ranks"] = tuple(sorted((str(k), int(v)) for k, v in dict(d.get("ranks") or {}).items()))
    return cls(**d)


__all__ = ["SVDSpec"]
