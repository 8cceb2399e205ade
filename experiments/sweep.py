"""Runs a sweep: every (method, budget, seed) point of a sweep config as an ordinary run under one root, then the
results table, the Pareto figures and the deployed latency of every point.

  python -m experiments.sweep --config=frontier --workdir=runs/frontier [--workers=2]
  python -m experiments.sweep --config=frontier --config.seeds='(0,)' --workdir=runs/frontier_s0
  python -m experiments.sweep --list_configs

--config=NAME | FILE.py   a sweep config (experiments/configs/sweeps/NAME.py; fields: docs/experiments.md#sweeps)
--config.<field>=VALUE    override a sweep field
--workdir=ROOT            point NAME runs in ROOT/NAME (e.g. ROOT/svd_hoyer-b2-s0); results in ROOT
--workers=N               1 (default): the points one after another in this process; N > 1: up to N points at once,
                          each a subprocess (log: ROOT/logs/NAME.log), started once its source point is done
Every point is checked before any runs (one ``error:`` line naming the method and the field). Rerunning resumes:
a finished point is skipped, a half-done one resumes from its checkpoint. A failed point is reported and the others
go on (those that depend on it are not run); the exit status is then 1. SIGTERM / SIGINT / SIGUSR1 stop the running
points cleanly (each saves a checkpoint) and the sweep exits 75: run the same command again to resume.
Outputs: ROOT/results.csv, ROOT/results.md, ROOT/results_macs.png, ROOT/results_latency.png (docs/experiments.md).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from absl import app

from experiments import cifar_svd, compress, export, lm_svd, pruning_from_scratch
from experiments.configs import sweeps as sweep_configs
from experiments.run import cli, preemption, preflight
from experiments.run.plan import make_plan
from experiments.sweeps import points as sweep_points
from experiments.sweeps import results as sweep_results

SWEEP_DIR = os.path.dirname(os.path.abspath(sweep_configs.__file__))
MAINS = {"train": cifar_svd.main, "compress": compress.main, "from_scratch": pruning_from_scratch.main,
         "lm": lm_svd.main}
log = logging.getLogger("jaxsvd")


def check_compress(c) -> None:
  """A compress point's config checked as ``experiments.compress`` checks it, but for its source (the sweep runs
  the source first: its directory may not exist yet), and the run config of its stages (``make_plan``)."""
  try:
    compress.check_config(c)
  except ValueError as err:
    if not str(err).startswith("source:"):
      raise
  make_plan(compress.stage_config(c))


# command -> its check of a point's parsed config before anything runs (``sweeps.points.check``)
VALIDATORS = {"train": make_plan, "compress": check_compress, "from_scratch": pruning_from_scratch.validate,
              "lm": make_plan}


def workers_flag(argv: Sequence[str]) -> tuple[list[str], int]:
  """(argv without ``--workers``, its value: 1 if absent); one-line ``ValueError`` for a bad value."""
  out, workers, i = [], "1", 0
  argv = list(argv)
  while i < len(argv):
    match = re.fullmatch(r"--?workers(?:=(.*))?", argv[i])
    if match:
      if match.group(1) is None:
        i += 1
      workers = match.group(1) if match.group(1) is not None else (argv[i] if i < len(argv) else "")
    else:
      out.append(argv[i])
    i += 1
  if not workers.isdigit() or int(workers) < 1:
    raise ValueError(f"--workers must be an int >= 1, got {workers!r}")
  return out, int(workers)


def run_here(point: sweep_points.Point) -> str:
  """Runs ``point`` in this process (its program's ``main``); returns 'done' or 'failed: <one line>'.

  Raises:
    preemption.Stopped: the point stopped on a signal after saving (the sweep stops too).
  """
  try:
    MAINS[point.command](["sweep", *point.argv])
  except SystemExit as exit_:
    if exit_.code == preemption.EXIT_CODE:
      raise preemption.Stopped(f"{point.name} stopped on a signal", 0) from None
    if exit_.code not in (None, 0):
      return f"failed: {exit_.code}"
  except Exception as err:  # noqa: BLE001 -- a failed point is reported and the sweep goes on
    log.exception("point %s failed", point.name)
    return f"failed: {type(err).__name__}: {cli.one_line(err)}"
  return "done"


def ready(point: sweep_points.Point, status: dict) -> str | None:
  """'go' when ``point`` can start, 'blocked: ...' when its source did not finish, None while it must wait."""
  if point.source is None or status.get(point.source) in ("done", "finished"):
    return "go"
  if status.get(point.source, "").startswith(("failed", "blocked")):
    return f"blocked: its source {point.source} did not finish"
  return None


def run_serial(points, stop: preemption.StopRequest, status: dict) -> bool:
  """The points one after another in this process; returns False when a signal stopped the sweep."""
  for p in points:
    if p.name in status:
      continue
    if stop.received:
      return False
    state = ready(p, status)
    if state != "go":
      status[p.name] = state or "blocked"
      continue
    log.info("sweep: point %s: %s", p.name, p.command_line())
    try:
      status[p.name] = run_here(p)
    except preemption.Stopped:
      status[p.name] = "stopped"
      return False
  return not stop.received


def run_workers(points, workers: int, root: str, stop: preemption.StopRequest, status: dict) -> bool:
  """Up to ``workers`` points at once, each ``python -m PROGRAM ...`` in a subprocess; returns False when stopped."""
  os.makedirs(os.path.join(root, "logs"), exist_ok=True)
  pending, running, stopping = [p for p in points if p.name not in status], {}, False
  while pending or running:
    if stop.received and not stopping:
      stopping = True
      for proc, _ in running.values():
        proc.send_signal(signal.SIGTERM)  # each saves its step and exits 75
    for name, (proc, log_file) in list(running.items()):
      if proc.poll() is not None:
        log_file.close()
        del running[name]
        rc = proc.returncode
        status[name] = ("done" if rc == 0 else "stopped" if rc == preemption.EXIT_CODE else
                        f"failed: exit {rc} (log: {os.path.join(root, 'logs', name + '.log')})")
        stopping = stopping or rc == preemption.EXIT_CODE
        log.info("sweep: point %s %s", name, status[name])
    for p in list(pending):
      if stopping or len(running) >= workers:
        break
      state = ready(p, status)
      if state is None:
        continue
      pending.remove(p)
      if state != "go":
        status[p.name] = state
        continue
      log.info("sweep: point %s started: %s", p.name, p.command_line())
      log_file = open(os.path.join(root, "logs", f"{p.name}.log"), "w")  # noqa: SIM115 -- closed when it ends
      running[p.name] = (subprocess.Popen([sys.executable, "-m", p.module, *p.argv], stdout=log_file,
                                          stderr=subprocess.STDOUT), log_file)
    if stopping and not running:
      return False
    time.sleep(0.2)
  return not stopping


def run_sweep(s, root: str, workers: int = 1, command: str | None = None) -> dict:
  """Checks, runs (or resumes) and reports the sweep ``s`` under ``root``.

  Args:
    s: the sweep config.
    root: the sweep's directory.
    workers: points run at once (1: in this process).
    command: the sweep's command line, for results.md.

  Returns:
    {point name: 'finished' (skipped: done before) | 'done' | 'failed: ...' | 'blocked: ...' | 'stopped'}.

  Raises:
    ValueError: one line naming a bad sweep field or point, before anything runs.
    preemption.Stopped: a signal stopped the sweep (the running points saved their checkpoints).
  """
  sweep_points.check_sweep(s)
  points = sweep_points.expand(s, root)
  configs = sweep_points.check(points, VALIDATORS)
  preflight.check_workdir(root)
  os.makedirs(root, exist_ok=True)
  status = {p.name: "finished" for p in points if sweep_points.finished(p, configs[p.name])}
  log.info("sweep: %d points under %s (%d finished before), %d worker(s)", len(points), os.path.abspath(root),
           len(status), workers)
  with preemption.StopRequest() as stop:
    complete = (run_serial(points, stop, status) if workers == 1 else
                run_workers(points, workers, root, stop, status))
  if not complete:
    raise preemption.Stopped(f"sweep stopped ({stop.received or 'a point was stopped'}): run the same command "
                             f"again to resume (exit code {preemption.EXIT_CODE})", 0)
  sweep_results.report(s, points, root, status, export.export_run, command)
  return status


def main(argv: Sequence[str]) -> None:
  """``python -m experiments.sweep`` (module doc): exit 0, 1 when a point failed, 75 when stopped by a signal."""
  try:
    listing = cli.config_listing(argv, SWEEP_DIR)
  except ValueError as err:
    raise SystemExit(f"error: {cli.one_line(err)}") from None
  if listing is not None:
    print(listing)
    return
  try:
    argv, workers = workers_flag(argv)
    s, root = cli.parse(argv, "frontier", "runs/sweep", config_dir=SWEEP_DIR)
    cli.setup_logging()
    command = " ".join(["python -m experiments.sweep", *argv[1:]] + ([f"--workers={workers}"] if workers > 1 else []))
    status = run_sweep(s, root, workers, command)
  except preemption.Stopped as err:
    log.warning("%s", err)
    raise SystemExit(preemption.EXIT_CODE) from None
  except cli.USER_ERRORS as err:
    raise SystemExit(f"error: {cli.one_line(err)}") from None
  bad = {n: v for n, v in status.items() if v.startswith(("failed", "blocked"))}
  if bad:
    raise SystemExit(f"error: {len(bad)} of {len(status)} points did not finish: "
                     + "; ".join(f"{n} {v}" for n, v in bad.items()))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.absl_flags)
