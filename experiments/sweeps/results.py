"""A sweep's results: one row per point (``results.csv``), mean ± spread over seeds per (method, budget)
(``results.md``), the deployed latency of every point timed side by side, and the Pareto figures (``sweeps.plots``).

The spread is half the range over seeds, (max − min) / 2: with 2 seeds each value is mean ± spread. Two methods
whose means differ by less than the larger spread are a tie.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments.run import cli
from experiments.sweeps import plots as sweep_plots
from jaxsvd import checkpoint
from jaxsvd.checkpoint import integrity
from jaxsvd.deploy import artifact
from jaxsvd.training import xla_options

log = logging.getLogger("jaxsvd")
# the tasks' test metrics a point's summary may hold: (column, results.md header, format, scale); a point fills those
# its task reports (image classification: accuracy; language models: perplexity and bits per byte), the others stay
# empty
METRICS = (("test_accuracy", "test accuracy (%)", ".2f", 100), ("test_perplexity", "test perplexity", ".3f", 1),
           ("test_bits_per_byte", "test bits/byte", ".4f", 1))
COLUMNS = ("point", "method", "budget", "seed", "axes", *(m[0] for m in METRICS), "params", "nonzero_params", "macs",
           "macs_reduction", "epochs", "wall_s", "latency_ms")
STATS = (*(m[0] for m in METRICS), "params", "nonzero_params", "macs", "macs_reduction", "wall_s", "latency_ms")


def nonzero_params(workdir: str) -> int:
  """Nonzero entries of the params in ``workdir``'s latest checkpoint (masked weights count as zero), read as stored
  (checksums verified; no model is built, so a user model's run needs none)."""
  directory, step = checkpoint.resolve(os.path.join(workdir, "checkpoints"))
  integrity.verify_item(os.path.join(directory, str(step)), "model")
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(directory, str(step), "model"))["params"]
  return int(sum(np.count_nonzero(np.asarray(x)) for x in jax.tree.leaves(params)))


def wall_seconds(workdir: str) -> float:
  """Seconds the run trained, evaluated and pruned: the sum of metrics.csv's ``time_*`` columns (resumes included)."""
  path = os.path.join(workdir, "metrics.csv")
  if not os.path.exists(path):
    return math.nan
  with open(path) as f:
    return float(sum(float(v) for row in csv.DictReader(f) for k, v in row.items()
                     if k and k.startswith("time_") and v not in ("", None)))


def point_row(point, summary: dict) -> dict:
  """The CSV row of a finished point (``macs_reduction`` and ``latency_ms`` are filled in later).

  Args:
    point: the ``sweep_points.Point``.
    summary: its summary.json.

  Returns:
    {column: value} (``COLUMNS``; None for the ``METRICS`` its task does not report).
  """
  return {"point": point.name, "method": point.method, "budget": point.budget, "seed": point.seed,
          "axes": " ".join(f"{f}={v}" for f, v in point.axes), **{m[0]: summary.get(m[0]) for m in METRICS},
          "params": summary["params_after"], "nonzero_params": nonzero_params(point.workdir),
          "macs": summary["macs_after"], "macs_reduction": math.nan, "epochs": summary["epochs"],
          "wall_s": wall_seconds(point.workdir), "latency_ms": math.nan}


def deployed(workdir: str, batch: int, rules: Sequence[str], export_run: Callable) -> str:
  """``workdir/deploy``: the autotuned artifact of the latest checkpoint, written by ``export_run``
  (``experiments.export.export_run``) unless it is current."""
  out = os.path.join(workdir, "deploy")
  _, step = checkpoint.resolve(os.path.join(workdir, "checkpoints"))
  try:
    if artifact.read_meta(out).get("checkpoint_step") == step:
      return out
  except (OSError, ValueError):
    pass
  platforms = ("cpu",) if jax.default_backend() == "cpu" else ("cpu", "cuda")
  export_run(workdir, out, batch=batch, rules=tuple(rules), platforms=platforms)
  return out


def latencies(rows: list[dict], workdirs: dict, latency, export_run: Callable) -> None:
  """Fills each row's ``latency_ms``: every point's deployed artifact loaded in this process and timed side by side
  (``xla_options.alternate``: alternating, median of ``latency.repeats`` calls on ``latency.batch`` inputs).

  Args:
    rows: the finished points' rows (updated in place).
    workdirs: {point name: workdir}.
    latency: the sweep's ``latency`` fields.
    export_run: writes a run's deploy artifact (``experiments.export.export_run``).
  """
  fns = {}
  for row in rows:
    try:
      out = deployed(workdirs[row["point"]], latency.batch, latency.rules, export_run)
      predict = artifact.load(out)
      shape = artifact.read_meta(out)["input_shape"]
      x = np.random.default_rng(0).normal(size=(latency.batch, *shape)).astype(np.float32)
      fns[row["point"]] = lambda predict=predict, x=x: predict(x, normalized=True)
    except (*cli.USER_ERRORS, checkpoint.CheckpointError) as err:
      log.warning("sweep: no deployed latency for %s: %s", row["point"], cli.one_line(err))
  times = xla_options.alternate(fns, latency.repeats) if fns else {}
  for row in rows:
    row["latency_ms"] = times[row["point"]] * 1e3 if row["point"] in times else math.nan


def spread(values: Sequence[float]) -> tuple[float, float]:
  """(mean, half the range) of the finite ``values`` ((nan, nan) if none)."""
  v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
  if not v.size:
    return math.nan, math.nan
  return float(v.mean()), float((v.max() - v.min()) / 2)


def aggregate(rows: list[dict]) -> list[dict]:
  """One entry per (method, budget, axes), in the rows' order: ``seeds`` and, per ``STATS`` column, its
  (mean, half range) over the seeds.

  Args:
    rows: the point rows.

  Returns:
    [{'method', 'budget', 'axes', 'seeds', column: (mean, spread), ...}].
  """
  groups = {}
  for row in rows:
    groups.setdefault((row["method"], row["budget"], row["axes"]), []).append(row)
  return [{"method": m, "budget": b, "axes": a, "seeds": len(g), **{k: spread([r[k] for r in g]) for k in STATS}}
          for (m, b, a), g in groups.items()]


def write_csv(path: str, rows: list[dict]) -> None:
  """``rows`` as CSV (``COLUMNS``; an empty budget for methods without one)."""
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows({k: ("" if row[k] is None else row[k]) for k in COLUMNS} for row in rows)


def _pm(stat: tuple[float, float], fmt: str, scale: float = 1.0) -> str:
  mean, half = stat
  if not np.isfinite(mean):
    return "—"
  return f"{mean * scale:{fmt}} ± {half * scale:{fmt}}"


def markdown(groups: list[dict], points, status: dict, command: str) -> str:
  """results.md: the table (mean ± half range over seeds; a column per test metric some point reports), then the
  commands that made it."""
  metrics = [m for m in METRICS if any(np.isfinite(g[m[0]][0]) for g in groups)] or list(METRICS[:1])
  lines = ["# Sweep results", "", "Each value is the mean ± half the range, (max − min) / 2, over the seeds; a "
           "difference smaller than the spread is a tie. MACs reduction: the reference method's MACs / the point's. "
           "Latency: the deployed artifact (autotuned), ms per batch, all timed side by side in one process.", "",
           f"| method | budget | seeds | {' | '.join(m[1] for m in metrics)} | MACs (M) | MACs reduction | params | "
           "nonzero params | latency (ms) | wall (s) |", "|---|---|---|" + "---|" * (len(metrics) + 7)]
  for g in groups:
    name = g["method"] + (f" ({g['axes']})" if g["axes"] else "")
    budget = "—" if g["budget"] is None else f"{g['budget']:g}×"
    values = " | ".join(_pm(g[column], fmt, scale) for column, _, fmt, scale in metrics)
    lines.append(f"| {name} | {budget} | {g['seeds']} | {values} | "
                 f"{_pm(g['macs'], '.3f', 1e-6)} | {_pm(g['macs_reduction'], '.2f')} | {_pm(g['params'], ',.0f')} | "
                 f"{_pm(g['nonzero_params'], ',.0f')} | {_pm(g['latency_ms'], '.2f')} | {_pm(g['wall_s'], '.0f')} |")
  missing = [f"{n} ({v})" for n, v in status.items() if v not in ("done", "finished")]
  if missing:
    lines += ["", "Points without a result: " + "; ".join(missing)]
  lines += ["", "## Commands", "", "```bash", command, "```", "", "Each point, as the sweep ran it:", "", "```bash",
            *(p.command_line() for p in points), "```", ""]
  return "\n".join(lines)


def report(s, points, root: str, status: dict, export_run: Callable, command: str | None = None) -> list[dict]:
  """Writes ``root``'s results.csv, results.md, results_macs.png and results_latency.png for the finished points.

  Args:
    s: the sweep config (``reference``, ``latency``).
    points: the sweep's points.
    root: the sweep's directory.
    status: {point name: its state}; only 'done' / 'finished' points are read.
    export_run: writes a run's deploy artifact for the latency column (``experiments.export.export_run``).
    command: the sweep's command line for results.md (default: ``python -m experiments.sweep --workdir=ROOT``).

  Returns:
    The CSV rows.
  """
  rows = []
  for p in points:
    path = os.path.join(p.workdir, "summary.json")
    if status.get(p.name) in ("done", "finished") and os.path.exists(path):
      with open(path) as f:
        rows.append(point_row(p, json.load(f)))
  reference = spread([r["macs"] for r in rows if r["method"] == s.reference])[0]
  for row in rows:
    row["macs_reduction"] = reference / row["macs"] if row["macs"] else math.nan
  if s.latency.enabled:
    latencies(rows, {p.name: p.workdir for p in points}, s.latency, export_run)
  write_csv(os.path.join(root, "results.csv"), rows)
  groups = aggregate(rows)
  command = command or f"python -m experiments.sweep --workdir={root}"
  with open(os.path.join(root, "results.md"), "w") as f:
    f.write(markdown(groups, points, status, command))
  sweep_plots.pareto_figures(groups, root)
  log.info("sweep: %d of %d points in %s", len(rows), len(points), os.path.join(root, "results.md"))
  return rows


__all__ = ["METRICS", "COLUMNS", "STATS", "nonzero_params", "wall_seconds", "point_row", "deployed", "latencies", "spread",
           "aggregate", "write_csv", "markdown", "report"]
