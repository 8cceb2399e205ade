"""The experiment config as a validated, typed plan, built before any data is read or anything is compiled.

Every bad field is a one-line ``ValueError`` naming it (``pruning.energy must be in (0.0, 1.0), got 1.5``).
"""

from __future__ import annotations

import dataclasses

from experiments import tasks
from experiments.run import events as events_lib
from experiments.run import preemption
from jaxsvd.core.contract import InputContract
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.svd import COMPUTE_DTYPES
from jaxsvd.core.validate import check_choice, check_min_int
from jaxsvd.pruning import Phases
from jaxsvd.training import optim
from jaxsvd.training.losses import RegularizerConfig
from jaxsvd.training.parallel import KINDS


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run does: its task, the model's SVD spec (before its input shape and ranks are known), loss, phases and
  events."""
  task: tasks.Task
  svd: SVDSpec | None
  reg: RegularizerConfig
  phases: Phases
  events: tuple[events_lib.Event, ...]

  def reg_for(self, epoch: int) -> RegularizerConfig:
    """The regularizer of ``epoch``: in the fine-tune phase the sparsity term is off (λs = 0).

    Args:
      epoch: the epoch (1-based).

    Returns:
      The ``RegularizerConfig``.
    """
    return dataclasses.replace(self.reg, sparsity=0.0) if self.phases.in_finetune(epoch) else self.reg


def _check_basic_fields(c) -> None:
  check_choice("parallel", c.parallel, KINDS)
  check_choice("compute_dtype", c.compute_dtype, COMPUTE_DTYPES)
  for field in ("num_epochs", "batch_size", "eval_batch_size"):
    check_min_int(field, c[field], 1)
  check_min_int("seed", c.seed, 0)
  for field in ("max_steps_per_epoch", "num_devices"):
    if c[field] is not None:
      check_min_int(field, c[field], 1)
  check_min_int("checkpoint.max_to_keep", c.checkpoint.max_to_keep, 1)
  check_min_int("checkpoint.every_steps", c.checkpoint.every_steps, 0)
  check_min_int("checkpoint.stop_sync_every", c.checkpoint.stop_sync_every, 1)
  preemption.check_stop_signal(c.checkpoint.stop_signal)
  if c.widths is not None:
    for path, width in dict(c.widths).items():
      check_min_int(f"widths[{path!r}]", width, 1)


def svd_spec(c) -> SVDSpec | None:
  """The config's SVD spec (ranks come later, from the params), or None for a dense model.

  Args:
    c: the experiment config (its ``svd`` section).

  Returns:
    The ``SVDSpec`` without ranks, or None when ``c.svd.enabled`` is off.

  Raises:
    ValueError: if a field of ``c.svd`` is invalid.
  """
  if not c.svd.enabled:
    return None
  s = c.svd
  return SVDSpec(s.decomposition, s.mode, (), s.default_rank, s.dense_first, s.dense_last, s.sigma, s.init,
                 s.dense_strided)


def make_plan(c) -> Plan:
  """Validates config ``c`` and returns its plan.

  Args:
    c: an experiment config (``experiments/configs/default.py`` lists every field).

  Returns:
    The ``Plan``.

  Raises:
    ValueError: one line naming the first bad field.
  """
  task = tasks.of(c)
  task.validate(c)
  _check_basic_fields(c)
  optim.validate(c.optimizer)
  reg = RegularizerConfig.from_config(c.reg, "reg")
  phases = Phases(c.num_epochs, c.finetune_epochs)
  return Plan(task, svd_spec(c), reg, phases, events_lib.from_config(c, phases))


def initial_architecture(c, plan: Plan, input_shape, ranks, contract: InputContract | None = None) -> Architecture:
  """The record of a run's model at initialization (``ranks`` read back from its params): the task's
  (``Task.architecture``) with the plan's SVD spec.

  Args:
    c: the experiment config.
    plan: the run's plan (its task and SVD spec).
    input_shape: one example's shape.
    ranks: {layer path: rank}, used as both the current and the original ranks.
    contract: the input contract of the run's data (``Inputs.contract``), or None.

  Returns:
    The ``Architecture``.
  """
  return plan.task.architecture(c, plan.svd, input_shape, contract).replace(ranks=dict(ranks),
                                                                           original_ranks=dict(ranks))


def resumable_architecture(c, plan: Plan, saved: Architecture, input_shape, where: str = "the workdir",
                           contract: InputContract | None = None) -> Architecture:
  """A workdir's saved record, checked against the config and data that resume (or start from) it; the SVD execution
  mode and the compute dtype follow the config (every mode computes the same function; the precision is a choice of
  the run that computes, not of the weights).

  Args:
    c: the resuming experiment config.
    plan: its plan.
    saved: the record read from the workdir's checkpoint.
    input_shape: the example shape of the data the run resumes on.
    where: what holds ``saved``, named in the errors.
    contract: the data's input contract: recorded when ``saved`` has none (a checkpoint of jaxsvd < 0.3.1).

  Returns:
    ``saved``, with ``svd.mode`` and ``compute_dtype`` from the config (and ``contract`` if it had none).

  Raises:
    ValueError: one line if the config asks for another model, class count or SVD spec (any field but ``mode``), or
      the data's examples have another shape than the checkpoint's model was built for.
  """
  spec = lambda svd: None if svd is None else svd.with_mode("auto").with_ranks({}).to_dict()  # noqa: E731
  identity = lambda a: (a.model, a.num_classes, spec(a.svd), dict(a.options or {}))  # noqa: E731 -- the record's
  asked, have = identity(plan.task.architecture(c, plan.svd, saved.input_shape, None)), identity(saved)
  if asked != have:
    raise ValueError(f"{where} holds a run of (model, classes, svd spec, model options) = {have}, the config asks "
                     f"for {asked}; resume with the run's config or use another --workdir")
  if tuple(saved.input_shape) != tuple(input_shape):
    examples = plan.task.examples
    raise ValueError(f"{where}'s checkpoint is for {tuple(saved.input_shape)} {examples}, data_dir="
                     f"{c.data_dir} holds {tuple(input_shape)} {examples} ({c.dataset}); resume on the run's data or "
                     f"use another --workdir")
  saved = saved.replace(compute_dtype=c.compute_dtype)
  if saved.input_contract is None and contract is not None:
    saved = saved.replace(input_contract=contract.to_json())
  return saved if plan.svd is None else saved.replace(svd=saved.svd.with_mode(plan.svd.mode))
