"""What a run says when it starts, and the re-run of a finished run (which says so and changes nothing).

  announce   four log lines before the first step: the model and the config's differences from the defaults; the
             data (name, sizes, where from, normalization); devices and processes; the workdir and whether the run
             is new or resumes (and from which step)
  finished   a workdir whose latest checkpoint is the config's last epoch and whose summary.json is that epoch's: the
             run is finished; ``loop.run`` logs it and returns the summary without touching a file
"""

from __future__ import annotations

import json
import logging
import os

import jax

from experiments import tasks
from experiments.configs import default
from jaxsvd import checkpoint
from jaxsvd.training import distributed
from jaxsvd.version import __version__

log = logging.getLogger("jaxsvd")


def announce(s, workdir: str) -> None:
  """Logs the start-up lines (process 0 only).

  Args:
    s: the run's ``loop.Setup`` (config, inputs, parallel mode, checkpoint manager).
    workdir: the run's directory.
  """
  if not distributed.is_primary():
    return
  c = s.c
  svd = "dense" if not c.svd.enabled else f"SVD {c.svd.decomposition}-wise (mode {c.svd.mode})"
  log.info("jaxsvd %s: %s, %s, compute %s; config differs from the defaults in: %s", __version__, c.model, svd,
           c.get("compute_dtype", "float32"), config_changes(c, default.get_config()))
  log.info("data: %s", s.inputs.describe())
  log.info("devices: %d process(es), %d %s device(s) used (parallel=%r)", jax.process_count(), s.par.num_devices,
           jax.default_backend(), c.parallel)
  done = checkpoint.steps(os.fspath(s.mngr.directory)) if os.path.isdir(s.mngr.directory) else []
  state = f"resuming from its latest checkpoint, step {done[-1]}" if done else "a new run"
  log.info("workdir: %s (%s); %d epochs", os.path.abspath(workdir), state, c.num_epochs)


def finished(c, workdir: str) -> dict | None:
  """The summary of ``workdir`` when its run is finished for config ``c``, else None (nothing is written).

  Args:
    c: the config the run is started with (``num_epochs`` is read).
    workdir: the run's directory.

  Returns:
    summary.json's contents when the latest checkpoint is epoch ``c.num_epochs`` (or later) at an epoch end and
    summary.json was written for that epoch; None otherwise (including a damaged latest step: the normal start
    reports it).
  """
  directory, path = os.path.join(workdir, "checkpoints"), os.path.join(workdir, "summary.json")
  if not (os.path.isfile(path) and os.path.isdir(directory)):
    return None
  steps = checkpoint.steps(directory)
  try:
    meta = checkpoint.read_meta(directory, steps[-1]) if steps else None
    with open(path) as f:
      summary = json.load(f)
  except (checkpoint.CheckpointError, OSError, ValueError):
    return None
  if meta is None or meta.get("epoch_progress") or meta["epoch"] < c.num_epochs or summary.get("epochs") != meta["epoch"]:
    return None
  saved = meta.get("config", {})
  if (saved.get("task", tasks.DEFAULT), saved.get("model"), saved.get("dataset")) != (
      c.get("task", tasks.DEFAULT), c.model, c.dataset):
    return None  # another experiment: the normal start names the mismatch
  metric = tasks.of(c).best_metric
  log.info("%s holds a finished run (epoch %d of %d, %s %.4f): nothing to do, no file changed. Raise "
           "--config.num_epochs to train further; see summary.json, metrics.csv and the plots there.",
           os.path.abspath(workdir), meta["epoch"], c.num_epochs, metric.replace("_", " "),
           summary.get(metric, float("nan")))
  return summary


def config_changes(c, defaults, limit: int = 16) -> str:
  """The fields of config ``c`` whose values differ from ``defaults`` (or that ``defaults`` lacks), as one line.

  Args:
    c: the run's config.
    defaults: the default config (``experiments/configs/default.py``).
    limit: at most this many fields are named.

  Returns:
    'field=value, ...' ('none' when they agree).
  """
  ours, theirs = _flat(c.to_dict()), _flat(defaults.to_dict())
  changed = [f"{k}={v!r}" for k, v in ours.items() if k not in theirs or theirs[k] != v]
  more = f", ... ({len(changed) - limit} more)" if len(changed) > limit else ""
  return ", ".join(changed[:limit]) + more if changed else "none"


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
