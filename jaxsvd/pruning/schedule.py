"""When pruning events fire and when the fine-tune phase begins, in completed epochs (1-based).

  Schedule(every, start, stop):  due after epochs start, start + every, start + 2·every, ... ≤ stop
  Schedule.once(epoch):          due after that one epoch
  Phases(num_epochs, finetune_epochs):  epochs 1..T train; the last ``finetune_epochs`` fine-tune (no
                                 sparsity terms, no pruning): T = num_epochs − finetune_epochs
"""

from __future__ import annotations

import dataclasses

from jaxsvd.core.validate import FromConfig, check_min_int


@dataclasses.dataclass(frozen=True)
class Schedule(FromConfig):
  """Epochs after which a recurring event is due. ``stop=None``: no bound besides the caller's ``last``.

  Due after epochs start, start + every, ... ≤ stop. Construction raises ValueError unless every, start (and
  stop, when given) are ints ≥ 1.
  """
  every: int = 1
  start: int = 1
  stop: int | None = None

  def __post_init__(self):
    check_min_int("every", self.every, 1)
    check_min_int("start", self.start, 1)
    if self.stop is not None:
      check_min_int("stop", self.stop, 1)

  @classmethod
  def once(cls, epoch: int) -> Schedule:
    """Due after ``epoch`` only.

    Args:
      epoch: the (1-based) epoch.

    Returns:
      ``Schedule(every=1, start=epoch, stop=epoch)``.

    Raises:
      ValueError: if ``epoch`` is not an int ≥ 1.
    """
    return cls(every=1, start=epoch, stop=epoch)

  def last(self, limit: int) -> int:
    """The last epoch that may fire, given the caller's ``limit`` (e.g. the last training epoch).

    Args:
      limit: the caller's last epoch.

    Returns:
      ``limit`` if ``stop`` is None, else min(stop, limit).
    """
    return limit if self.stop is None else min(self.stop, limit)

  def due(self, epoch: int, limit: int) -> bool:
    """Whether the event fires after completing ``epoch`` (1-based), at most up to epoch ``limit``.

    Args:
      epoch: the epoch just completed.
      limit: the last epoch any event may fire (``Phases.last_train_epoch``).

    Returns:
      True on start, start + every, ... ≤ min(stop, limit).
    """
    if epoch < self.start or epoch > self.last(limit):
      return False
    return (epoch - self.start) % self.every == 0

  def count(self, limit: int) -> int:
    """How many times the event fires up to epoch ``limit`` (0 if ``start`` is after the last epoch that may fire)."""
    last = self.last(limit)
    return 0 if last < self.start else (last - self.start) // self.every + 1

  def index(self, epoch: int) -> int:
    """The 1-based index of the last firing at or before ``epoch`` (its index if it fires after ``epoch``);
    0 before ``start``."""
    return 0 if epoch < self.start else (epoch - self.start) // self.every + 1


@dataclasses.dataclass(frozen=True)
class Phases:
  """A run of ``num_epochs``: training, then ``finetune_epochs`` of fine-tuning (sparsity terms off).

  Construction raises ValueError unless num_epochs ≥ 1, finetune_epochs ≥ 0 (ints) and finetune_epochs <
  num_epochs.
  """
  num_epochs: int
  finetune_epochs: int = 0

  def __post_init__(self):
    check_min_int("num_epochs", self.num_epochs, 1)
    check_min_int("finetune_epochs", self.finetune_epochs, 0)
    if self.finetune_epochs >= self.num_epochs:
      raise ValueError(f"finetune_epochs={self.finetune_epochs} leaves no training epochs "
                       f"(num_epochs={self.num_epochs})")

  @property
  def last_train_epoch(self) -> int:
    """The last epoch before fine-tuning: where the final prune happens and online pruning stops."""
    return self.num_epochs - self.finetune_epochs

  def in_finetune(self, epoch: int) -> bool:
    """Whether ``epoch`` (1-based) belongs to the fine-tune phase.

    Args:
      epoch: the epoch.

    Returns:
      True iff epoch > ``last_train_epoch``.
    """
    return epoch > self.last_train_epoch


__all__ = ["Schedule", "Phases"]
