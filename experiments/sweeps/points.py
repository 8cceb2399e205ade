"""A sweep config (``experiments/configs/sweeps``) as its points: one ordinary run per (method, budget, seed, axes),
each a command line, checked before anything runs.

  expand(sweep, root)   the points in dependency order (a compress point after its source's point)
  check(points, validators)
                        each point's command line parsed and its config validated by its command's validator (the
                        sweep command passes them: this package imports no command): one line naming the method and
                        the field of the first bad one
  finished(point)       whether the point's run is done (its summary.json written for its last epoch)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping

from experiments.configs.sweeps import BUDGET_AS, COMMANDS
from experiments.run import cli, startup

MODULES = {"train": "experiments.cifar_svd", "compress": "experiments.compress",
           "from_scratch": "experiments.pruning_from_scratch", "lm": "experiments.lm_svd"}
METHOD_FIELDS = ("config", "command", "overrides", "budget", "budget_as", "budgets", "source", "axes")
SWEEP_FIELDS = ("methods", "budgets", "seeds", "axes", "common", "reference", "latency")


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep: its directory name, coordinates, command line and the point it depends on."""
  name: str
  method: str
  budget: float | None
  seed: int
  axes: tuple  # ((field, value), ...)
  command: str
  argv: tuple  # the flags after the program name, --workdir last
  workdir: str
  source: str | None = None  # the name of the point this one compresses

  @property
  def module(self) -> str:
    """The program that runs the point (``python -m MODULE``)."""
    return MODULES[self.command]

  def command_line(self) -> str:
    """The point as a shell command."""
    return " ".join(["python", "-m", self.module, *(_quote(a) for a in self.argv)])


def _quote(arg: str) -> str:
  return arg if re.fullmatch(r"[\w.,:/=+@%-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _fmt(value) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def check_sweep(s) -> None:
  """One-line ``ValueError`` naming the first bad sweep field (before any point is parsed).

  Args:
    s: the sweep config.
  """
  unknown = sorted(set(s.keys()) - set(SWEEP_FIELDS))
  if unknown:
    raise ValueError(f"the sweep config has no field {unknown[0]!r} (fields: {', '.join(SWEEP_FIELDS)})")
  if not s.methods:
    raise ValueError("methods: name at least one method (experiments.configs.sweeps.method)")
  for b in s.budgets:
    if not isinstance(b, (int, float)) or not b >= 1.0:
      raise ValueError(f"budgets: each budget is a compression factor >= 1, got {b!r}")
  if not s.seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in s.seeds):
    raise ValueError(f"seeds: a non-empty tuple of ints, got {tuple(s.seeds)!r}")
  if s.reference not in s.methods:
    raise ValueError(f"reference: {s.reference!r} is not a method ({', '.join(s.methods)})")
  check_axes("axes", s.axes)
  for key, value in (("latency.batch", s.latency.batch), ("latency.repeats", s.latency.repeats)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{key} must be an int >= 1, got {value!r}")
  for name, m in s.methods.items():
    check_method(s, name, m)
  order(s)  # a source cycle is an error too


def check_axes(where: str, axes) -> None:
  """One-line ``ValueError`` naming ``where`` unless ``axes`` is ((field, (values, ...)), ...)."""
  for axis in axes:
    if len(axis) != 2 or not isinstance(axis[0], str) or not axis[1]:
      raise ValueError(f"{where}: each axis is (field, (values, ...)), got {axis!r}")


def check_method(s, name: str, m) -> None:
  """One-line ``ValueError`` naming ``methods.<name>.<field>`` for the first bad field of method ``name``."""
  where = f"methods.{name}"
  if not re.fullmatch(r"[A-Za-z0-9_]+", name):
    raise ValueError(f"{where}: a method name is letters, digits and '_' (it names run directories)")
  unknown = sorted(set(m.keys()) - set(METHOD_FIELDS))
  if unknown:
    raise ValueError(f"{where}: no field {unknown[0]!r} (fields: {', '.join(METHOD_FIELDS)})")
  if m.command not in COMMANDS:
    raise ValueError(f"{where}.command: {m.command!r} is not one of {COMMANDS}")
  try:
    cli.resolve_config(m.config)
  except ValueError as err:
    raise ValueError(f"{where}.config: {err}") from None
  if m.budget_as not in BUDGET_AS:
    raise ValueError(f"{where}.budget_as: {m.budget_as!r} is not one of {BUDGET_AS}")
  check_axes(f"{where}.axes", m.get("axes", ()))
  if m.budgets and not m.budget:
    raise ValueError(f"{where}.budgets: the method has no budget field (set {where}.budget)")
  for item in m.overrides:
    if not isinstance(item, str) or "=" not in item:
      raise ValueError(f"{where}.overrides: each override is 'field=value', got {item!r}")
  if m.command == "compress":
    if m.source not in s.methods or m.source == name:
      raise ValueError(f"{where}.source: {m.source!r} is not another method of the sweep (the run to compress)")
    if s.methods[m.source].budget and not m.budget:
      raise ValueError(f"{where}.source: {m.source!r} has a budget and {name!r} none (which point to compress?)")
  elif m.source:
    raise ValueError(f"{where}.source: only command='compress' has a source (command={m.command!r})")


def order(s) -> list[str]:
  """The methods in dependency order: as written, except that a method waits for its source (and then comes right
  after it: a trained run's prunes follow it); ``ValueError`` on a source cycle."""
  done, out = set(), []
  pending = list(s.methods)
  while pending:
    ready = [n for n in pending if not s.methods[n].source or s.methods[n].source in done]
    if not ready:
      raise ValueError(f"methods.{pending[0]}.source: the sources form a cycle ({', '.join(pending)})")
    out.append(ready[0])
    done.add(ready[0])
    pending.remove(ready[0])
  return out


def _budget_value(m, b: float) -> float:
  return b if m.budget_as == "b" else 1.0 / b


def _grid(axes) -> list[tuple]:
  grid = [()]
  for field, values in axes:
    grid = [g + ((field, v),) for g in grid for v in values]
  return grid


def _label(axes) -> str:
  return "".join(f"-{f.split('.')[-1]}{_fmt(v)}" for f, v in axes)


def expand(s, root: str) -> list[Point]:
  """The sweep's points in dependency order.

  Args:
    s: the sweep config (``check_sweep`` first).
    root: the sweep's directory; point ``NAME`` runs in ``root/NAME``.

  Returns:
    One ``Point`` per method × budget (if the method has a budget field) × seed × axis values, named
    ``METHOD[-bB]-sSEED[-FIELDVALUE...]`` (e.g. ``svd_hoyer-b2-s0``; the sweep's axes, then the method's own).
  """
  root = os.path.abspath(root)
  points = {}
  for name in order(s):
    m = s.methods[name]
    budgets = (m.budgets or s.budgets) if m.budget else (None,)
    for b in budgets:
      for seed in s.seeds:
        for axes in _grid((*s.axes, *m.get("axes", ()))):
          point = f"{name}{'' if b is None else f'-b{_fmt(b)}'}-s{seed}{_label(axes)}"
          flags = [f"--config={m.config}", *(f"--config.{o}" for o in (*s.common, *m.overrides))]
          if b is not None:
            flags.append(f"--config.{m.budget}={_fmt(_budget_value(m, b))}")
          flags += [f"--config.seed={seed}", *(f"--config.{f}={_fmt(v)}" for f, v in axes)]
          source = None
          if m.command == "compress":
            src = s.methods[m.source]
            own = {f for f, _ in src.get("axes", ())} | {f for f, _ in s.axes}
            source = (f"{m.source}{'' if not src.budget else f'-b{_fmt(b)}'}-s{seed}"
                      + _label(a for a in axes if a[0] in own))
            flags.append(f"--config.source={os.path.join(root, source)}")
          workdir = os.path.join(root, point)
          points[point] = Point(point, name, b, seed, axes, m.command, (*flags, f"--workdir={workdir}"), workdir,
                                source)
  return list(points.values())


def parse_point(point: Point):
  """The point's run config, parsed from its command line as its program parses it (``cli.parse``)."""
  config, _ = cli.parse(["sweep", *point.argv], "fashion_mnist", point.workdir,
                        lock_config=point.command != "from_scratch")
  return config


def check(points: list[Point], validators: Mapping[str, Callable]) -> dict:
  """Each point's config parsed and validated as its command does before it compiles anything.

  Args:
    points: ``expand``'s points.
    validators: {command: its check of a parsed config, raising a one-line ``ValueError``} for every command of the
      points (``experiments.sweep.VALIDATORS``).

  Returns:
    {point name: its config}.

  Raises:
    ValueError: one line, ``METHOD (point NAME): <the command's error naming the field>``.
  """
  configs = {}
  for p in points:
    try:
      c = configs[p.name] = parse_point(p)
      validators[p.command](c)
    except ValueError as err:
      raise ValueError(f"methods.{p.method} (point {p.name}): {cli.one_line(err)}") from None
  return configs


def finished(point: Point, config) -> bool:
  """Whether ``point``'s run is finished: train / from_scratch: ``startup.finished`` (summary.json written for the
  config's last epoch); compress: summary.json carries the compress fields (written last).

  Args:
    point: the point.
    config: its parsed config.

  Returns:
    True when rerunning it would change nothing.
  """
  if point.command != "compress":
    return startup.finished(config, point.workdir) is not None
  path = os.path.join(point.workdir, "summary.json")
  try:
    with open(path) as f:
      return "method" in json.load(f)
  except (OSError, ValueError):
    return False


__all__ = ["MODULES", "METHOD_FIELDS", "SWEEP_FIELDS", "Point", "check_sweep", "check_axes", "check_method", "order", "expand",
           "parse_point", "check", "finished"]
