"""Multi-process (multi-host) runs on JAX's own multi-controller runtime: ``jax.distributed``.

One Python process per host (or per GPU); every process runs the same program. ``initialize`` starts the runtime
before any JAX computation, from explicit arguments or, when they are unset, from the cluster environment that
``jax.distributed.initialize`` itself detects (SLURM, Open MPI, Cloud TPU, Kubernetes; ``JAX_COORDINATOR_ADDRESS``
/ ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` also work). After it, ``jax.devices()`` lists every process's devices
(``jaxsvd.training.parallel.DataParallel('sharding')`` builds one mesh over them) and ``jax.local_devices()`` this
process's.

Failure: the coordination service expects a heartbeat from every process; when one dies the others are stopped
within about ``heartbeat_timeout_s`` (a collective in flight fails sooner), so a lost host ends the job instead of
hanging it. Rerunning the same command resumes from the last checkpoint (``experiments.run.loop``).
On CPU, cross-process collectives use gloo (jax's default ``jax_cpu_collectives_implementation``).
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger("jaxsvd")
MODES = ("auto", "on", "off")
# Environment variables by which jax.distributed's cluster detection (jax._src.clusters) recognizes a multi-process job.
CLUSTER_ENV = {"slurm": ("SLURM_JOB_ID", "SLURM_NTASKS"), "open_mpi": ("OMPI_MCA_orte_hnp_uri",),
               "cloud_tpu_multihost": ("TPU_WORKER_HOSTNAMES",), "jax_env": ("JAX_COORDINATOR_ADDRESS",)}


def detected_cluster(environ=None) -> str | None:
  """The cluster environment this process runs in (a key of ``CLUSTER_ENV``), or None.

  A SLURM job counts only with more than one task, a TPU VM only with more than one worker host.

  Args:
    environ: the environment mapping to read (default: ``os.environ``).

  Returns:
    The first name of ``CLUSTER_ENV`` (in its order) whose variables are all set and non-empty and that counts
    as a multi-process job, or None if there is none.
  """
  environ = os.environ if environ is None else environ
  for name, variables in CLUSTER_ENV.items():
    if all(environ.get(v) for v in variables):
      if name == "slurm" and int(environ["SLURM_NTASKS"]) <= 1:
        continue
      if name == "cloud_tpu_multihost" and "," not in environ["TPU_WORKER_HOSTNAMES"]:
        continue
      return name
  return None


def initialize(mode: str = "auto", coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, heartbeat_timeout_s: int = 100,
               initialization_timeout_s: int = 300) -> bool:
  """Starts ``jax.distributed`` when asked to or when running in a multi-process cluster job.

  Args:
    mode: 'off' (single process), 'on' (always; unset arguments come from the cluster environment), 'auto' (when
      any argument is set or ``detected_cluster()`` finds a cluster).
    coordinator_address: 'host:port' of process 0's coordination service (the same for every process).
    num_processes: the number of processes in the job.
    process_id: this process's index, 0 ≤ process_id < num_processes.
    heartbeat_timeout_s: seconds without a heartbeat after which a process counts as dead and the job stops.
    initialization_timeout_s: seconds to wait for every process to connect.

  Returns:
    Whether the runtime was started (then ``jax.process_count()`` is the job's process count).

  Raises:
    ValueError: if ``mode`` is unknown, or ``process_id`` is outside [0, num_processes).
  """
  if mode not in MODES:
    raise ValueError(f"distributed: {mode!r} is not one of {MODES}")
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id: {process_id} is outside [0, num_processes={num_processes})")
  explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
  if mode == "off" or (mode == "auto" and not explicit and detected_cluster() is None):
    return False
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=initialization_timeout_s,
                             heartbeat_timeout_seconds=heartbeat_timeout_s)
  log.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  """Whether this is process 0 (the one that writes files no other process writes: metrics, summary, plots)."""
  return jax.process_index() == 0


__all__ = ["MODES", "CLUSTER_ENV", "detected_cluster", "initialize", "is_primary"]
