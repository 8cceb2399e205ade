"""A checkpoint as a jitted inference function, autotuned on real calls (apart from the checkpoint format)."""

from __future__ import annotations

from typing import Callable

from jaxsvd import checkpoint
from jaxsvd.core.record import Architecture
from jaxsvd.linen.modes import in_mode
from jaxsvd.training import xla_options
from jaxsvd.training.train_state import EVAL_VARIANTS


def load_for_inference(path: str, step: int | None = None) -> tuple[Callable, Architecture]:
  """A checkpoint's model as ``apply(images) -> logits``, ready to call.

  Args:
    path: a run's checkpoint directory (latest step unless ``step``) or one step's directory.
    step: which step.

  Returns:
    (apply, architecture record). ``apply`` is jitted; on its first real calls it times the model's own SVD
    execution mode against all-reconstruct under each XLA option set for inference, then keeps the
    fastest (``xla_options.autotuned_jit``); every candidate computes the same function.

  Raises:
    CheckpointError: as ``checkpoint.restore``.
  """
  restored = checkpoint.restore(path, step)
  apply = xla_options.autotuned_jit(
      lambda x, mode: in_mode(restored.model.apply, mode)(restored.variables, x, train=False),
      variants=EVAL_VARIANTS, options=xla_options.candidate_options(inference=True))
  return apply, restored.architecture


__all__ = ["load_for_inference"]
