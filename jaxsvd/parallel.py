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
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxsvd import xla_options
from jaxsvd.recompile import CountingJit
from jaxsvd.train_state import EVAL_VARIANTS, eval_step, train_step
from jaxsvd.validate import check_choice

KINDS = ("none", "pmap", "sharding")
AXIS = "batch"


class DataParallel:
  def __init__(self, kind: str = "none", num_devices: int | None = None):
    check_choice("parallel", kind, KINDS)
    self.kind = kind
    devices = jax.devices()[: num_devices or None] if kind != "none" else jax.devices()[:1]
    if num_devices and len(devices) < num_devices:
      raise ValueError(f"parallel: asked for {num_devices} devices, only {len(jax.devices())} available")
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
      self.eval_step = CountingJit(eval_step, xla_options.autotuned_jit, variants=EVAL_VARIANTS)

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  def place(self, state):
    """Put a host/single-device state where the step expects it."""
    if self.kind == "none":
      return jax.device_put(state, self.devices[0])
    if self.kind == "pmap":
      n = self.num_devices
      stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x))), state)
      return jax.device_put(stacked, NamedSharding(self.mesh, P(AXIS)))
    return jax.device_put(state, NamedSharding(self.mesh, P()))

  def host_state(self, state):
    """The single (unreplicated) state, for pruning, checkpoints and export."""
    if self.kind == "pmap":
      return jax.tree.map(lambda x: x[0], state)
    return jax.device_get(state) if self.kind == "sharding" else state

  def shard_batch(self, batch: dict) -> dict:
    n = len(next(iter(batch.values())))
    if n % self.num_devices:
      raise ValueError(f"batch size {n} is not divisible by the {self.num_devices} devices; "
                       f"choose batch_size as a multiple of the device count")
    if self.kind == "none":
      return batch
    if self.kind == "pmap":
      split = {k: v.reshape(self.num_devices, -1, *v.shape[1:]) for k, v in batch.items()}
      return jax.device_put(split, NamedSharding(self.mesh, P(AXIS)))
    return jax.device_put(batch, NamedSharding(self.mesh, P(AXIS)))

  def metrics(self, metrics) -> dict:
    """Per-step metrics as host floats (already averaged across devices)."""
    if self.kind == "pmap":
      metrics = jax.tree.map(lambda x: x[0], metrics)
    return jax.tree.map(float, jax.device_get(metrics))
