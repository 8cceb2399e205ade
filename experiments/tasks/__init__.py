"""Tasks: what a run trains for. The run (``experiments.run``) is task-agnostic; the config's task supplies

  validate        its config fields (model, dataset, data location, ...), one-line errors
  inputs          its data behind one interface (``Inputs``: batches, input shape, stream position, input contract)
  architecture    the record of the model it builds (``jaxsvd.core.record.Architecture``, ranks still empty)
  parallel        its train and eval steps (its loss) under the config's data-parallel mode
  evaluate        its test metrics from the eval steps' summed outputs
  summary, summary_rows, epoch_text, best_metric, higher_is_better, progress_metrics, examples
                  what the summary, the log and the checkpoints show of its metrics
  model           the linen model of one of its records (default: a zoo record's ``build_model``; a task of user
                  models, e.g. ``language_model``, builds its module and ``svdify``s it)

A task is one module of this package that defines ``TASK = Task(...)``; the config's ``task`` field names it
(``DEFAULT`` when a config has none) and ``get`` imports the module by that name. A new task (a language model, ...)
is one new module here plus its configs: nothing in ``experiments/run/`` changes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from jaxsvd.core.contract import InputContract
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.validate import check_choice
from jaxsvd.training.parallel import DataParallel

DEFAULT = "image_classification"  # the task of a config without a ``task`` field (every config before tasks existed)


class Inputs(Protocol):
  """A run's data, as the loop reads it (``tasks.image_classification.InMemory`` and ``Streamed`` are two)."""
  input_shape: tuple  # one example's shape (what the model is initialized and exported with)
  local: bool  # whether batches are this process's part of each global batch only (a stream), not the whole batch

  def num_train_batches(self) -> int:
    """Batches per training epoch."""

  def train_batches(self, seed, epoch: int, start: int = 0) -> Iterator[dict]:
    """The epoch's training batches from batch ``start`` on (a resume inside the epoch)."""

  def eval_batches(self) -> Iterator[dict]:
    """The evaluation batches (the last one padded, with a 'mask')."""

  def get_state(self) -> dict | None:
    """The data position a checkpoint stores (None when the order is a function of (seed, epoch))."""

  def set_state(self, state: dict | None) -> None:
    """Restores ``get_state``'s position."""

  def describe(self) -> str:
    """One line for the start-up log."""

  def contract(self) -> InputContract:
    """The input contract a checkpoint and a deploy artifact carry."""


@dataclasses.dataclass(frozen=True)
class Task:
  """Everything task-specific a run needs (module doc)."""
  name: str
  validate: Callable[[Any], None]  # (config) -> None; a one-line ValueError naming the first bad task field
  inputs: Callable[[Any], Inputs]  # (config) -> the data, loaded and checked against the config
  architecture: Callable[[Any, SVDSpec | None, tuple, InputContract | None], Architecture]  # (config, svd spec,
  #   input shape, contract) -> the record of the model the task builds, ranks empty
  parallel: Callable[[Any], DataParallel]  # (config) -> train/eval steps (the task's loss) under config.parallel
  evaluate: Callable[[dict], dict]  # the eval steps' summed outputs -> the row's test metrics ('test_loss', ...)
  summary: Callable[[Sequence[dict]], dict]  # the metrics rows -> the task's summary fields (first in summary.json)
  summary_rows: Callable[[dict], list[tuple[str, str]]]  # the summary -> its (label, value) rows of the summary table
  epoch_text: Callable[[dict], str]  # a metrics row -> its metrics in the epoch's log line
  best_metric: str  # the row's test metric the best checkpoint is kept by and run info records
  progress_metrics: tuple[str, ...] = ("loss",)  # step metrics the progress bar shows
  examples: str = "examples"  # what one example is called ('images'): the throughput column, messages
  higher_is_better: bool = True  # of ``best_metric`` (False: a loss, a perplexity)
  model: Callable[[Architecture, str | None], Any] = lambda a, bn_axis_name: a.build_model(bn_axis_name)  # (record,
  #   BN axis name) -> the linen model; the default builds a zoo record, a task of user models builds its own
  units_per_example: Callable[[tuple], int] = lambda input_shape: 1  # (example shape) -> the units the metrics
  #   rows' and the summary's MACs are counted per (a language model: its tokens, so MACs per token)
  unit: str = "example"  # what those units are called; another than 'example' is the summary's 'macs_per'
  next_step: str = "the inference artifact: python -m experiments.export --workdir={workdir}"  # what a finished
  #   run's log says comes next ({workdir}: its absolute path)

  def best(self, values) -> Any:
    """The best of ``values`` of ``best_metric`` (the highest, or the lowest when not ``higher_is_better``).

    Args:
      values: an iterable of metric values.

    Returns:
      The best value, or None when ``values`` is empty.
    """
    return (max if self.higher_is_better else min)(values, default=None)


def names() -> list[str]:
  """The tasks of this package (its modules), sorted.

  Returns:
    The names a config's ``task`` may take.
  """
  return sorted(info.name for info in pkgutil.iter_modules(__path__))


@functools.cache
def get(name: str) -> Task:
  """The task ``name``: the ``TASK`` of module ``experiments.tasks.<name>``, imported by name.

  Args:
    name: one of ``names()``.

  Returns:
    The ``Task``.

  Raises:
    ValueError: one line naming ``task`` if there is no such task.
  """
  check_choice("task", name, tuple(names()))
  task = importlib.import_module(f"{__name__}.{name}").TASK
  if not isinstance(task, Task) or task.name != name:
    raise ValueError(f"task: module experiments.tasks.{name} must define TASK = Task(name={name!r}, ...)")
  return task


def load_all() -> list[Task]:
  """Every task, each module imported (what the libraries it imports define at import time, e.g. absl flags, exists
  from then on).

  Returns:
    The tasks, by name.
  """
  return [get(name) for name in names()]


def of(c) -> Task:
  """The task of config ``c``: its ``task`` field, ``DEFAULT`` if it has none.

  Args:
    c: an experiment config.

  Returns:
    The ``Task``.

  Raises:
    ValueError: one line naming ``task`` if there is no such task.
  """
  return get(c.get("task", DEFAULT))


__all__ = ["DEFAULT", "Inputs", "Task", "names", "get", "load_all", "of"]
