"""Every pruning method's event type, in firing order: what the loop, the optimizer and the summary iterate.

A new pruning method is one new ``events.Event`` subclass (in ``events.py`` or its own module) added to
``EVENT_TYPES``; ``train.py`` does not change.
"""

from __future__ import annotations

from experiments.run import events
from experiments.run.methods import masking
from jaxsvd.pruning import Phases

EVENT_TYPES: tuple[type[events.Event], ...] = (events.RankPrune, events.Slimming, masking.MaskPrune)


def from_config(c, phases: Phases) -> tuple[events.Event, ...]:
  """Every event config ``c`` asks for, in firing order.

  Args:
    c: the experiment config.
    phases: the run's training and fine-tune phases.

  Returns:
    The events of every type in ``EVENT_TYPES``, in that order.

  Raises:
    ValueError: one line naming a bad field.
  """
  return tuple(event for event_type in EVENT_TYPES for event in event_type.from_config(c, phases))


__all__ = ["EVENT_TYPES", "from_config"]
