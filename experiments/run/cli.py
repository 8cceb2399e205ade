"""The experiment programs' command line: flags → (config, workdir) → run, every failure one ``error:`` line.

``--config`` takes a config file (``FILE.py[:ARGS]``) or a packaged config by name (``fashion_mnist``,
``paper:resnet20,channel,hoyer``), which works after any install and from any directory; ``--list_configs`` prints
the packaged configs with their descriptions and run times, ``--describe_config=NAME`` one config's whole docstring
(its command, expected result and time).

Flags are parsed into a fresh ``absl.flags.FlagValues`` per call, so ``main`` can be called in-process (tests) as
well as through ``absl.app.run``; a missing config file, an unknown ``--config.<field>``, a value of the wrong type
and every ``ValueError`` / ``OSError`` / ``FloatingPointError`` of the run end as ``SystemExit('error: ...')``.
"""

from __future__ import annotations

import ast
import difflib
import logging
import os
import re
import sys
import textwrap
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from experiments import configs as packaged_configs
from experiments import tasks
from experiments.run import preemption

CONFIG_DIR = os.path.dirname(os.path.abspath(packaged_configs.__file__))
log = logging.getLogger("jaxsvd")

# What a bad input can raise; each becomes one line. (EOFError: a truncated gzip file, zlib.error: a corrupt one.)
USER_ERRORS = (ValueError, OSError, FloatingPointError, EOFError, zlib.error, flags.Error)


def one_line(err: BaseException) -> str:
  """``err``'s message on one line: its first line, and its last one when they differ (a wrapped traceback's
  last line names the exception)."""
  lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
  return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def _unknown_field(argv: Sequence[str], err: Exception) -> str:
  """The message for an override of a field the config does not have (ml_collections raises a KeyError whose
  message is the quoted key, sometimes followed by a 'Did you mean' line; for nested fields it comes wrapped in an
  AttributeError)."""
  while err.args and isinstance(err.args[0], BaseException):  # an AttributeError wrapping the KeyError
    err = err.args[0]
  lines = str(err.args[0] if err.args else err).splitlines() or [""]
  key = lines[0].strip("\"'\\")
  hint = f" ({lines[-1].strip()})" if len(lines) > 1 else ""
  for arg in argv:
    match = re.match(r"--?(?:no)?config\.([\w.]+)", arg)
    if match and key in match.group(1).split("."):
      return f"--config.{match.group(1)}: the config has no field {key!r}{hint}"
  return f"the config has no field {key!r}{hint}"


def config_names(config_dir: str = CONFIG_DIR) -> list[str]:
  """The packaged configs' names (``experiments/configs/*.py`` but ``default``; or those of ``config_dir``), sorted."""
  return sorted(f[:-3] for f in os.listdir(config_dir)
                if f.endswith(".py") and not f.startswith("_") and f != "default.py")


def resolve_config(value: str, config_dir: str = CONFIG_DIR) -> str:
  """``--config``'s value as a file path: a packaged config's name (with its ``:ARGS``) becomes its file.

  Args:
    value: a path (``experiments/configs/fashion_mnist.py``, ``my.py:arg``) or a name (``fashion_mnist``,
      ``paper:resnet20,channel,hoyer``).
    config_dir: where names are looked up (the run configs; ``experiments/configs/sweeps`` for sweeps).

  Returns:
    The path ml_collections loads (a path is returned unchanged).

  Raises:
    ValueError: one line for a name that is neither a packaged config nor a file.
  """
  name, sep, rest = value.partition(":")
  if "/" in name or os.sep in name or name.endswith(".py") or os.path.exists(name):
    return value
  if name not in config_names(config_dir):
    lister = "experiments.cifar_svd" if config_dir == CONFIG_DIR else "experiments.sweep"
    raise ValueError(f"--config={value}: no packaged config named {name!r} (python -m {lister} "
                     f"--list_configs lists them) and no such file")
  return os.path.join(config_dir, f"{name}.py") + sep + rest


def config_doc(name: str, config_dir: str = CONFIG_DIR) -> str:
  """The docstring of packaged config ``name`` (empty if it has none).

  Args:
    name: one of ``config_names(config_dir)``.
    config_dir: the configs' folder.

  Returns:
    The docstring as written (its indentation kept, surrounding blank lines removed).
  """
  with open(os.path.join(config_dir, f"{name}.py")) as f:
    return (ast.get_docstring(ast.parse(f.read()), clean=False) or "").strip("\n")


def list_configs(config_dir: str = CONFIG_DIR, width: int = 120) -> str:
  """One entry per packaged config: its name, then its docstring's first paragraph and its ``time`` line in full,
  wrapped in a column as wide as the longest name allows.

  Args:
    config_dir: the configs' folder (default: the run configs).
    width: the longest line.

  Returns:
    The text, ending with how to print one config's whole docstring.
  """
  names = config_names(config_dir)
  column = max(map(len, names), default=0) + 2
  lines = []
  for name in names:
    doc = config_doc(name, config_dir)
    text = plain(" ".join(doc.split("\n\n")[0].split()))
    time = re.search(r"^\s*time\s+(.+)$", doc, re.M)
    if time:
      text += f" [time: {plain(time.group(1).strip())}]"
    wrapped = textwrap.wrap(text, max(width - column, 40), break_long_words=False, break_on_hyphens=False) or [""]
    lines += [name.ljust(column) + wrapped[0], *(" " * column + line for line in wrapped[1:])]
  program = "experiments.cifar_svd" if config_dir == CONFIG_DIR else "experiments.sweep"
  return "\n".join([*lines, "", f"python -m {program} --describe_config=NAME prints a config's whole description."])


def describe_config(name: str, config_dir: str = CONFIG_DIR) -> str:
  """Packaged config ``name``'s whole docstring (plain text) after its name and file.

  Args:
    name: the config's name (a ``:ARGS`` tail is ignored).
    config_dir: the configs' folder.

  Returns:
    The text.

  Raises:
    ValueError: one line for an unknown name, naming the closest ones.
  """
  name = name.partition(":")[0]
  names = config_names(config_dir)
  if name not in names:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"--describe_config={name}: no packaged config named {name!r} ({hint}--list_configs lists "
                     f"them all)")
  path = os.path.join(config_dir, f"{name}.py")
  return f"{name} ({path})\n\n{plain(config_doc(name, config_dir))}"


def config_listing(argv: Sequence[str], config_dir: str = CONFIG_DIR) -> str | None:
  """What ``--list_configs`` or ``--describe_config=NAME`` in ``argv`` prints, or None when neither is there.

  Raises:
    ValueError: one line for ``--describe_config`` without a name or with an unknown one.
  """
  if "--list_configs" in argv:
    return list_configs(config_dir)
  for i, arg in enumerate(argv):
    if re.fullmatch(r"--describe_config(=.*)?", arg):
      name = arg.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
      if not name:
        raise ValueError("--describe_config needs a config name: --describe_config=NAME (--list_configs lists them)")
      return describe_config(name, config_dir)
  return None


def _resolved(argv: list[str], config_dir: str = CONFIG_DIR) -> list[str]:
  """``argv`` with each ``--config=NAME`` / ``--config NAME`` resolved (``resolve_config``)."""
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if re.match(r"--?config=", arg):
      flag, value = arg.split("=", 1)
      arg = f"{flag}={resolve_config(value, config_dir)}"
    elif re.fullmatch(r"--?config", arg) and i + 1 < len(argv):
      out.append(arg)
      i += 1
      arg = resolve_config(argv[i], config_dir)
    out.append(arg)
    i += 1
  return out


def parse(argv: Sequence[str], default_config: str, default_workdir: str, lock_config: bool = True,
          config_dir: str = CONFIG_DIR):
  """(config, workdir) from a command line.

  Args:
    argv: the command line, program name first: ``--config=FILE`` or ``--config=NAME`` (``resolve_config``),
      ``--config.<field>=VALUE`` overrides and ``--workdir=DIR``.
    default_config: the config (file or packaged name) used without ``--config``.
    default_workdir: the workdir used without ``--workdir``.
    lock_config: whether the config is locked (no new fields may be added by the program).
    config_dir: where config names are looked up (``resolve_config``).

  Returns:
    (the ``ml_collections.ConfigDict``, the workdir string).

  Raises:
    ValueError: one line for a missing or broken config file, an unknown field, a bad value or extra arguments.
  """
  argv = _resolved(list(argv), config_dir)
  values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", resolve_config(default_config, config_dir),
                                  "Experiment config file (get_config()).",
                                  flag_values=values, lock_config=lock_config, sys_argv=argv)
  flags.DEFINE_string("workdir", default_workdir, "Directory for checkpoints, metrics, plots and exports.",
                      flag_values=values)
  try:
    rest = values(argv)
    values.config.get("model")  # a config file that failed to load raises OSError on first access
  except (AttributeError, KeyError) as err:
    raise ValueError(_unknown_field(argv, err)) from None
  except flags.Error as err:
    raise ValueError(one_line(err)) from None
  except OSError as err:
    path = next((a.split("=", 1)[1] for a in reversed(argv) if re.match(r"--?config=", a)), default_config)
    cause = err.__cause__ or err
    raise ValueError(f"--config={path}: cannot load the config file ({one_line(cause).split('] ')[-1]})") from None
  if len(rest) > 1:
    raise ValueError(f"unexpected arguments: {rest[1:]}")
  return values.config, values.workdir


def main_for(run_fn: Callable[[Any, str], Any], default_config: str, default_workdir: str,
             lock_config: bool = True) -> Callable[[Sequence[str]], None]:
  """A ``main(argv)`` that parses ``argv`` (see ``parse``) and runs ``run_fn(config, workdir)`` with logging set up.

  Args:
    run_fn: ``loop.run``-like: (config, workdir) → summary.
    default_config: the config file used without ``--config``.
    default_workdir: the workdir used without ``--workdir``.
    lock_config: as for ``parse``.

  Returns:
    ``main(argv)``; it raises ``SystemExit('error: <one line>')`` on any of ``USER_ERRORS``, and
    ``SystemExit(preemption.EXIT_CODE)`` when a signal stopped the run after saving (the log says where).
  """

  def main(argv: Sequence[str]) -> None:
    try:
      listing = config_listing(argv)
    except ValueError as err:
      raise SystemExit(f"error: {one_line(err)}") from None
    if listing is not None:
      print(listing)
      return
    try:
      config, workdir = parse(argv, default_config, default_workdir, lock_config)
      setup_logging()
      if not any(re.match(r"--?workdir(=|$)", arg) for arg in argv[1:]):
        log.warning("no --workdir given: writing to %s (name one with --workdir=DIR)", workdir)
      run_fn(config, workdir)
    except preemption.Stopped:
      raise SystemExit(preemption.EXIT_CODE) from None
    except USER_ERRORS as err:
      raise SystemExit(f"error: {one_line(err)}") from None

  return main


def command(doc: str, flag_values: flags.FlagValues, body: Callable[[list[str]], None]) -> Callable[[Sequence[str]],
                                                                                              None]:
  """A ``main(argv)`` for a tool with its own flags (``flag_values``, not absl's global ones, so tools can be imported
  together): ``--help`` prints ``doc`` and the flags; ``body(positional args)`` runs with logging set up; a bad flag
  and every one of ``USER_ERRORS`` ends as ``SystemExit('error: <one line>')``.

  Args:
    doc: the tool's help text (its module docstring).
    flag_values: the tool's flags.
    body: runs the tool on the positional arguments (the program name removed).

  Returns:
    ``main(argv)``.
  """

  def main(argv: Sequence[str]) -> None:
    if any(arg in ("--help", "-h", "--helpfull", "--helpshort") for arg in argv[1:]):
      print(plain(f"{doc.strip()}\n\nflags:\n{flag_values.get_help()}"))
      return
    try:
      rest = flag_values(list(argv))
      setup_logging()
      body(rest[1:])
    except USER_ERRORS as err:
      raise SystemExit(f"error: {one_line(err)}") from None

  return main


def plain(text: str) -> str:
  """``text`` as a terminal shows it: the reST markup of docstrings removed (a literal in double backquotes becomes
  'x', or x when it holds a quote; a ``:role:`x``` or single-backquoted name becomes x).

  Args:
    text: a docstring or help text.

  Returns:
    The text without the markup.
  """
  text = re.sub(r"``([^`]+?)``", lambda m: m.group(1) if "'" in m.group(1) else f"'{m.group(1)}'", text)
  return re.sub(r"(?::\w+:)?`([^`]+?)`", r"\1", text)


def absl_flags(argv: Sequence[str]) -> list[str]:
  """``absl.app.run``'s flags parser: absl's own flags (logging) are parsed globally, the rest is left to ``main``
  (``app.run(main, flags_parser=absl_flags)``); ``--help`` / ``-h`` print the program's docstring (its flags) and
  its module's flags, as plain text (``plain``), then exit 0. Every task is loaded first: the libraries a task imports define their absl flags
  then (grain's, for a task that streams its data), and they are accepted and listed by ``--helpfull``."""
  if any(arg in ("--help", "-h", "--helpshort") for arg in argv[1:]):
    doc = (sys.modules["__main__"].__doc__ or f"USAGE: {argv[0]} [flags]").strip()
    print(plain(f"{doc}\n\nflags:\n{flags.FLAGS.main_module_help()}"))
    raise SystemExit(0)
  tasks.load_all()
  return flags.FLAGS(list(argv), known_only=True)


def setup_logging() -> None:
  """The 'jaxsvd' logger to stderr, plain messages (once per process); absl (Orbax's per-save INFO lines) to
  warnings."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  logger = logging.getLogger("jaxsvd")
  logger.setLevel(logging.INFO)
  logger.propagate = False
  for handler in logger.handlers:
    if getattr(handler, "jaxsvd_cli", False):
      handler.stream = sys.stderr  # the current one (in-process callers may have replaced and closed the old)
      return
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter("%(message)s"))
  handler.jaxsvd_cli = True
  logger.addHandler(handler)
