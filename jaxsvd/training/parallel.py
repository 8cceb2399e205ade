"""Data-parallel execution of the train/eval steps: 'none' | 'pmap' | 'sharding'.

  none:     jax.jit (with `xla_options.tuned_options()`; eval with `xla_options.autotuned_jit` over
            XLA options and SVD execution modes) on the default device.
  pmap:     state replicated (leading device axis, placed with jax.device_put + NamedSharding),
            batch split per device; gradients and metrics lax.pmean-ed over axis 'batch'. Models
            must be built with ``bn_axis_name='batch'`` so BatchNorm uses global-batch statistics
            (synchronized BN) — then N-device training equals 1-device training at the same global batch.
  sharding: jax.jit (tuned options too) with the state replicated and the batch sharded along a 1-D mesh axis
            (NamedSharding); XLA inserts the collectives.
Training batches must divide evenly by the device count (train batches are full: the data pipeline
drops the remainder); eval batches are padded with a mask instead.
Pruning/checkpointing work on ``host_state`` (unreplicated); ``place`` re-replicates after it.

Multi-process (``jax.process_count() > 1``, after ``jaxsvd.training.distributed.initialize``): 'sharding' only. The mesh
spans every process's devices; a batch is either global (every process holds the same one, as the in-memory
pipeline makes it: each process places only the rows of its own devices) or process-local (``local=True``, the
streaming pipeline: ``jax.make_array_from_process_local_data``). The state is replicated, so ``host_state`` is every
process's own full copy: pruning decisions made from it are the same on every process (same values, same
deterministic host code). Eval uses plain jit, not ``autotuned_jit``: timing-based choices could differ between
processes, and every process must run the same program.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsvd.core.validate import check_choice
from jaxsvd.training import xla_options
from jaxsvd.training.recompile import CountingJit
from jaxsvd.training.train_state import EVAL_VARIANTS, eval_step, train_step

KINDS = ("none", "pmap", "sharding")
AXIS = "batch"


class DataParallel:
  """The train/eval steps under one data-parallel strategy ('none', 'pmap' or 'sharding'; see module doc).

  ``train_step(state, batch, reg)`` and ``eval_step(state, batch)`` are ``CountingJit``-wrapped steps (their
  ``traces`` count jax's traces); ``place`` and ``host_state`` move a state into and out of the layout the steps
  expect, ``shard_batch`` splits a batch over the devices. Models must use ``bn_axis_name`` ('batch' under
  pmap, else None) as their BatchNorm axis name.
  """

  def __init__(self, kind: str = "none", num_devices: int | None = None):
    """Builds the device mesh and the wrapped steps.

    Args:
      kind: 'none' (the first device only), 'pmap' or 'sharding'.
      num_devices: how many of ``jax.devices()`` 'pmap' and 'sharding' use (None: all).

    Raises:
      ValueError: if ``kind`` is unknown or fewer than ``num_devices`` devices are used (so also for any
        ``num_devices`` > 1 with 'none').
    """
    check_choice("parallel", kind, KINDS)
    self.kind = kind
    self.multiprocess = jax.process_count() > 1
    if self.multiprocess and kind != "sharding":
      raise ValueError(f"parallel: a multi-process run ({jax.process_count()} processes) needs parallel='sharding', "
                       f"got {kind!r}")
    devices = jax.devices()[: num_devices or None] if kind != "none" else jax.devices()[:1]
    if num_devices and len(devices) < num_devices:
      raise ValueError(f"num_devices={num_devices} but parallel={kind!r} uses {len(devices)} of the "
                       f"{len(jax.devices())} available device(s)")
    self.devices = devices
    self.mesh = Mesh(np.asarray(devices), (AXIS,))
    self.bn_axis_name = AXIS if kind == "pmap" else None
    if kind == "pmap":
      self.train_step = CountingJit(functools.partial(train_step, axis_name=AXIS), jax.pmap, axis_name=AXIS,
                                    static_broadcasted_argnums=(2,), donate_argnums=(0,), devices=devices)
      self.eval_step = CountingJit(functools.partial(eval_step, axis_name=AXIS), jax.pmap, axis_name=AXIS,
                                   devices=devices)
    else:
      self.train_step = CountingJit(train_step, static_argnums=(2,), donate_argnums=(0,))
      self.eval_step = (CountingJit(eval_step) if self.multiprocess
                        else CountingJit(eval_step, xla_options.autotuned_jit, variants=EVAL_VARIANTS))

  @property
  def num_devices(self) -> int:
    """The number of devices the steps run on."""
    return len(self.devices)

  def place(self, state):
    """Put a host/single-device state where the step expects it.

    Args:
      state: an unreplicated state (e.g. from ``host_state``, or after pruning).

    Returns:
      'none': the state on the first device; 'pmap': stacked along a new leading device axis (num_devices, ...)
      and sharded one copy per device; 'sharding': replicated over the mesh.
    """
    if self.kind == "none":
      return jax.device_put(state, self.devices[0])
    if self.multiprocess:
      state = jax.tree.map(_to_host, state)  # arrays on a local device cannot be device_put across processes
    if self.kind == "pmap":
      n = self.num_devices
      stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x))), state)
      return jax.device_put(stacked, NamedSharding(self.mesh, P(AXIS)))
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def host_state(self, state):
    """The single (unreplicated) state, for pruning, checkpoints and export.

    Args:
      state: a state as the steps return it.

    Returns:
      'pmap': the first device's copy; 'sharding': the state fetched to the host; 'none': ``state`` unchanged.
    """
    if self.kind == "pmap":
      return jax.tree.map(lambda x: x[0], state)
    if self.multiprocess:
      return jax.tree.map(_to_host, state)
    return jax.device_get(state) if self.kind == "sharding" else state

  def shard_batch(self, batch: dict, local: bool = False) -> dict:
    """Splits a host batch over the devices.

    Args:
      batch: {name: array (B, ...)}, B a multiple of ``num_devices``: the global batch, or with ``local`` this
        process's part of it (B · process count a multiple of ``num_devices``).
      local: whether ``batch`` is only this process's part ('sharding' only).

    Returns:
      'none': ``batch`` unchanged; 'pmap': each array reshaped to (num_devices, B / num_devices, ...) and sharded
      along the leading axis; 'sharding': each array sharded along B over the mesh.

    Raises:
      ValueError: if B is not divisible by ``num_devices``.
    """
    n = len(next(iter(batch.values()))) * (jax.process_count() if local else 1)
    if n % self.num_devices:
      raise ValueError(f"batch size {n} is not divisible by the {self.num_devices} devices; "
                       f"choose batch_size as a multiple of the device count")
    if self.kind == "none":
      return batch
    if self.kind == "pmap":
      split = {k: v.reshape(self.num_devices, -1, *v.shape[1:]) for k, v in batch.items()}
      return jax.device_put(split, NamedSharding(self.mesh, P(AXIS)))
    sharding = NamedSharding(self.mesh, P(AXIS))
    if local:
      return jax.make_array_from_process_local_data(sharding, batch)
    if self.multiprocess:  # every process holds the global batch: each places the rows of its own devices
      return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index]) for k, v in batch.items()}
    return jax.device_put(batch, sharding)

  def metrics(self, metrics) -> dict:
    """Per-step metrics as host floats (already averaged across devices).

    Args:
      metrics: the metrics pytree of a train step (with a leading device axis under 'pmap').

    Returns:
      The same pytree with Python float leaves.
    """
    if self.kind == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return jax.tree.map(lambda x: float(_to_host(x)), metrics)


def _to_host(x):
  """A NumPy copy of ``x``: a replicated array from this process's first shard (no cross-process transfer),
  a partly sharded one gathered from every process (a collective: all processes must call it)."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return jax.device_get(x)
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  return multihost_utils.process_allgather(x, tiled=True)


__all__ = ["KINDS", "AXIS", "DataParallel"]
