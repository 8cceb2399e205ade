"""Dense with uniformly narrower widths, trained from scratch (the config's ``narrow`` section).

``narrow.macs_reduction`` = R > 0 sets the record's ``widths`` ({conv path: output channels} of the model's channel
groups: every VGG conv, each ResNet block's conv1; the residual stream keeps its width) by one width factor f common
to every group, width = ⌈f·C⌉ rounded up to ``narrow.channel_multiple`` (at least 1), f the largest with MACs ≤ dense
MACs / R (``jaxsvd.pruning.from_scratch.narrow``: the bisection pruning from scratch uses). The run is then
ordinary dense training of that architecture from a random init; the widths go into the architecture record.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from experiments.run import events
from jaxsvd.core.record import Architecture
from jaxsvd.core.validate import check_min_int
from jaxsvd.linen import flops
from jaxsvd.pruning import from_scratch

log = logging.getLogger("jaxsvd")


def validate(c) -> None:
  """One-line errors for the ``narrow`` fields.

  Args:
    c: the experiment config.

  Returns:
    None.

  Raises:
    ValueError: one line naming ``narrow.macs_reduction`` (not 0 or ≥ 1; set with SVD layers or explicit
      ``widths``) or ``narrow.channel_multiple`` (not an int ≥ 1).
  """
  n = c.narrow
  r = n.macs_reduction
  if isinstance(r, bool) or not isinstance(r, (int, float)) or not (r == 0 or r >= 1):
    raise ValueError(f"narrow.macs_reduction must be 0 (off) or a number ≥ 1, got {r!r}")
  check_min_int("narrow.channel_multiple", n.channel_multiple, 1)
  if r and c.svd.enabled:
    raise ValueError("narrow.macs_reduction narrows a dense model: set svd.enabled=False")
  if r and c.widths is not None:
    raise ValueError("narrow.macs_reduction sets widths itself: leave widths unset (None)")


def apply(c, architecture: Architecture) -> Architecture:
  """``architecture`` with the narrowed widths when ``narrow.macs_reduction`` > 0 (else unchanged).

  Args:
    c: the experiment config.
    architecture: the run's initial (dense, standard-width) record.

  Returns:
    The record with ``widths`` set.

  Raises:
    ValueError: one line naming ``narrow.macs_reduction`` if even one channel per group needs more MACs.
  """
  n = c.narrow
  if not n.macs_reduction:
    return architecture
  macs = lambda a: flops.count(a.build_model(), a.input_shape).macs  # noqa: E731
  architecture, report = from_scratch.narrow(architecture, macs, n.macs_reduction, n.channel_multiple)
  log.info("narrow: %d -> %d group channels, MACs %d -> %d (%.2fx fewer)", report["channels_full"],
           report["channels_narrow"], report["macs_full"], report["macs_narrow"],
           report["macs_full"] / report["macs_narrow"])
  return architecture


@events.register(order=40)
class Narrow(events.Event):
  """Narrow widths as a registered method: validated with the other methods (``from_config``, no event) and applied
  to the architecture a fresh run starts from (``initial``). It never fires."""
  kind: ClassVar[str] = "narrow"

  @classmethod
  def from_config(cls, c, phases) -> list[events.Event]:
    """No event; validates the ``narrow`` fields (``validate``)."""
    del phases
    validate(c)
    return []

  def due(self, epoch: int) -> bool:
    """Never due."""
    del epoch
    return False

  def apply(self, state, architecture: Architecture, ctx: events.Context) -> events.Outcome:
    """Not an event: narrow widths are set at initialization (``initial``)."""
    raise NotImplementedError("narrow sets widths at initialization, it does not fire")

  @classmethod
  def initial(cls, c, architecture: Architecture) -> Architecture:
    """``apply``: the narrowed widths when ``narrow.macs_reduction`` > 0."""
    return apply(c, architecture)


__all__ = ["validate", "apply", "Narrow"]
