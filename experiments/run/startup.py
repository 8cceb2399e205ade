"""What a run says when it starts, and the re-run of a finished run (which says so and changes nothing).

  announce   four log entries before the first step: the model and every field the config differs in from the
             defaults (wrapped over as many lines as it takes); the
             data (name, sizes, where from, normalization); devices and processes; the workdir and whether the run
             is new or resumes (and from which step)
  next_steps where the outputs are and the next command (``experiments.export``), said at the end of a run
  finished   a workdir whose latest checkpoint is the config's last epoch and whose summary.json is that epoch's: the
             run is finished; ``loop.run`` logs it and returns the summary without touching a file
"""

from __future__ import annotations

import json
import logging
import os
import textwrap

import jax

from experiments import tasks
from experiments.configs import default
from jaxsvd import checkpoint
from jaxsvd.training import distributed
from jaxsvd.version import __version__

log = logging.getLogger("jaxsvd")
SVD_ONLY = ("svd.", "pruning.", "final_prune.", "reg.orthogonality", "reg.sparsity")  # fields of SVD layers only


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
  changes = config_changes(c, default.get_config())
  log.info("jaxsvd %s: %s, %s, compute %s; config differs from the defaults in:%s%s", __version__, c.model, svd,
           c.get("compute_dtype", "float32"), " " if changes == "none" else "\n", changes)
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
           "--config.num_epochs to train further. %s", os.path.abspath(workdir), meta["epoch"], c.num_epochs,
           metric.replace("_", " "), summary.get(metric, float("nan")), next_steps(workdir, tasks.of(c)))
  return summary


def next_steps(workdir: str, task: tasks.Task | None = None) -> str:
  """Where a finished run's outputs are and the command that comes next (the end of a run and its re-run say it).

  Args:
    workdir: the run's directory.
    task: the run's task (its ``next_step``; None: the default task's).

  Returns:
    One line.
  """
  where = os.path.abspath(workdir)
  step = (task or tasks.get(tasks.DEFAULT)).next_step.format(workdir=where)
  return f"Outputs in {where}: summary.json, metrics.csv, the plots (*.png), checkpoints/. Next, {step}"


def config_changes(c, defaults, width: int = 120) -> str:
  """Every field of config ``c`` whose value differs from ``defaults`` (or that ``defaults`` lacks), wrapped; the
  other fields of a section that is off (``<section>.enabled=False``) are not named (its ``enabled`` is), nor, in a
  run without SVD layers, the fields that only act on them (``SVD_ONLY``).

  Args:
    c: the run's config.
    defaults: the default config (``experiments/configs/default.py``).
    width: the longest line; the fields go on as many lines as they need (none is left out).

  Returns:
    '  field=value, ...' on lines indented by two spaces ('none' when they agree).
  """
  ours, theirs = _flat(c.to_dict()), _flat(defaults.to_dict())
  off = [k[:-len("enabled")] for k, v in ours.items() if k.endswith(".enabled") and v is False]
  svd_only = SVD_ONLY if ours.get("svd.enabled") is False else ()
  hidden = lambda k: (any(k.startswith(p) and not k.endswith(".enabled") for p in off)  # noqa: E731
                      or (k != "svd.enabled" and k.startswith(svd_only)))
  changed = [f"{k}={v!r}" for k, v in ours.items() if (k not in theirs or theirs[k] != v) and not hidden(k)]
  if not changed:
    return "none"
  return textwrap.fill(", ".join(changed), width, initial_indent="  ", subsequent_indent="  ", break_long_words=False,
                       break_on_hyphens=False)


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict) and v:
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
