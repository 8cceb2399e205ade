"""The package layering of jaxsvd/ and of experiments/, read from the source's AST (nothing is imported).

Rules (docs/design.md), for both packages (``JAXSVD``, ``EXPERIMENTS``):
  - a subpackage imports only the subpackages below it (``ALLOWED``, ``EXPERIMENTS_ALLOWED``); nothing imports back
    up: in experiments/ no subpackage imports a command (the top-level modules) or a plugin module that the run
    resolves by name (an event type of ``run/methods/``, a task of ``tasks/``);
  - the frameworks are peers: ``linen`` and ``nnx`` never import each other (neither ``jaxsvd.<other>`` nor
    ``flax.<other>``), and the framework-neutral subpackages (``NEUTRAL``: core, training, pruning) import neither
    framework, ours or flax's (they look framework code up by name: ``jaxsvd.core.registry``);
  - the module import graph has no cycle;
  - no import statement inside a function or class (lazy loading is the root's PEP 562 ``__getattr__`` and plugins
    resolved by name with ``importlib``);
  - no private name (``_x``) of one module is used by another;
  - the library imports no experiment, benchmark or test;
    the run imports neither matplotlib nor the image data and model zoo (``jaxsvd.data``, ``jaxsvd.models``);
  - no file over 400 lines and no function over 60 lines, in jaxsvd/ and experiments/.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# subpackage -> the subpackages it may import (besides itself and the leaf module ``version``):
# core <- training <- pruning <- linen, nnx (peers) <- models (linen), checkpoint (nnx), deploy (linen)
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "training": {"core"},
    "pruning": {"core", "training"},
    "linen": {"core", "training", "pruning"},
    "nnx": {"core", "training", "pruning"},
    "models": {"core", "linen"},
    "checkpoint": {"core", "nnx"},
    "deploy": {"core", "linen", "training", "checkpoint"},
}
FRAMEWORKS = {"linen": "flax.linen", "nnx": "flax.nnx"}  # our subpackage -> the flax module it wraps
NEUTRAL = ("core", "training", "pruning")  # import no framework: flax.core's metadata boxes and flax.struct only
# subpackage -> external modules it may not import
FORBIDDEN_EXTERNAL = {**{name: tuple(FRAMEWORKS.values()) for name in NEUTRAL},
                      **{ours: tuple(m for other, m in FRAMEWORKS.items() if other != ours) for ours in FRAMEWORKS}}
OUTSIDE_THE_LIBRARY = ("experiments", "benchmarks", "tests")  # nothing in jaxsvd/ imports them
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# experiments/: subpackage -> the subpackages it may import; the top-level modules are the commands, which may import
# anything and which nothing imports
EXPERIMENTS_ALLOWED = {
    "configs": set(),
    "models": set(),
    "tasks": {"models"},
    "report": set(),
    "run": {"configs", "tasks", "report"},
    "sweeps": {"configs", "run", "report"},
}
EXPERIMENTS_FORBIDDEN_EXTERNAL = {"run": ("matplotlib", "jaxsvd.data", "jaxsvd.models"), "tasks": ("matplotlib",)}
# packages whose modules are plug-ins resolved by name (importlib): only their own package and the commands import them
EXPERIMENTS_PLUGINS = ("experiments.run.methods", "experiments.tasks")


@dataclasses.dataclass(frozen=True)
class Rules:
  """One package's layering: its subpackages' allowed imports, banned external modules, the packages it may not
  import at all, whether its top-level modules are commands, and its plug-in packages."""
  allowed: dict
  forbidden_external: dict
  outside: tuple
  name: str = "the library"  # how messages name the package
  commands: bool = False  # top-level modules are commands (experiments) rather than leaves (jaxsvd.version)
  plugins: tuple = ()


JAXSVD = Rules(ALLOWED, FORBIDDEN_EXTERNAL, OUTSIDE_THE_LIBRARY)
EXPERIMENTS = Rules(EXPERIMENTS_ALLOWED, EXPERIMENTS_FORBIDDEN_EXTERNAL, ("benchmarks", "tests"), "experiments",
                    commands=True, plugins=EXPERIMENTS_PLUGINS)


def _modules(root: pathlib.Path) -> dict[str, pathlib.Path]:
  package = root.name
  return {".".join((package, *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): f
          for f in sorted(root.rglob("*.py"))}


def _resolve(name: str, modules) -> str | None:
  """The module (or package) an imported dotted name refers to, if it is one of ours."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def _imports(tree: ast.Module, modules) -> list[tuple[ast.stmt, str]]:
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node, t) for a in node.names if (t := _resolve(a.name, modules))]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        target = _resolve(f"{node.module}.{a.name}", modules) or _resolve(node.module, modules)
        if target:
          found.append((node, target))
  return found


def _external_imports(tree: ast.Module) -> list[str]:
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
  return names


def _subpackage(module: str, allowed=ALLOWED) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in allowed else None


def _upward(name: str, source: str | None, target: str, root: str, rules: Rules) -> str | None:
  """Why importing ``target`` from module ``name`` (in subpackage ``source``) goes up, if it does."""
  dest = _subpackage(target, rules.allowed)
  if source and dest and dest != source and dest not in rules.allowed[source]:
    return f"{source} may not import {dest} ({target})"
  if source and target == root:
    return "imports the root package back up"
  if source and rules.commands and dest is None and target.count(".") == 1:
    return f"{source} may not import the command {target}"
  plugin = next((p for p in rules.plugins if target.startswith(p + ".") and not name.startswith(p + ".")), None)
  if source and plugin:
    return f"imports {target}: the modules of {plugin} are resolved by name (importlib) only"
  return None


def _framework_rule(source: str | None, dest: str | None) -> list[str]:
  """Why an import from subpackage ``source`` of subpackage ``dest`` breaks the peers rule (none: [])."""
  if source in NEUTRAL and dest in FRAMEWORKS:
    return [f"{source} is framework-neutral and may not import {dest}"]
  if source in FRAMEWORKS and dest in FRAMEWORKS and source != dest:
    return [f"{source} and {dest} are peers: {source} may not import {dest}"]
  return []


def _nested_imports(tree: ast.Module) -> list[int]:
  lines = []
  for scope in ast.walk(tree):
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      lines += [n.lineno for n in ast.walk(scope) if isinstance(n, (ast.Import, ast.ImportFrom))]
  return sorted(set(lines))


def _private_uses(tree: ast.Module, modules) -> list[str]:
  uses, bound = [], {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and _resolve(node.module, modules):
      uses += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.endswith("__")]
      bound.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in modules})
    elif isinstance(node, ast.Import):
      bound.update({a.asname: a.name for a in node.names if a.asname and a.name in modules})
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
        and node.attr.startswith("_") and not node.attr.endswith("__")):
      uses.append(f"{bound[node.value.id]}.{node.attr}")
  return uses


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (found := visit(nxt)):
        return found
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return None


def layering_violations(root: pathlib.Path, rules: Rules = JAXSVD) -> list[str]:
  """Every broken rule in the package at ``root``, one line each."""
  modules, problems, graph = _modules(root), [], {}
  for name, path in modules.items():
    tree = ast.parse(path.read_text(), str(path))
    graph[name] = {t for _, t in _imports(tree, modules) if t != name}
    problems += [f"{name}:{line}: import inside a function or class" for line in _nested_imports(tree)]
    problems += [f"{name}: uses the private {use}" for use in _private_uses(tree, modules)]
    source = _subpackage(name, rules.allowed)
    problems += [f"{name}:{node.lineno}: {why}" for node, target in _imports(tree, modules)
                 if (why := _upward(name, source, target, root.name, rules))]
    problems += [f"{name}:{node.lineno}: {why}" for node, target in _imports(tree, modules)
                 for why in _framework_rule(source, _subpackage(target, rules.allowed))]
    problems += [f"{name}: {source} may not import {banned}" for banned in _external_imports(tree)
                 if banned.startswith(rules.forbidden_external.get(source, ("\0",)))]
    problems += [f"{name}: {rules.name} may not import {banned}" for banned in _external_imports(tree)
                 if banned.split(".")[0] in rules.outside]
  # A package's __init__ importing its own modules is an edge down; a module importing its package's __init__
  # would close a cycle through it, which the graph shows like any other.
  if cycle := _cycle(graph):
    problems.append("import cycle: " + " -> ".join(cycle))
  return problems


def size_violations(*roots: pathlib.Path) -> list[str]:
  """Files over ``MAX_FILE_LINES`` and functions over ``MAX_FUNCTION_LINES`` under ``roots``."""
  problems = []
  for root in roots:
    for path in sorted(root.rglob("*.py")):
      source = path.read_text()
      if (n := len(source.splitlines())) > MAX_FILE_LINES:
        problems.append(f"{path.relative_to(REPO)}: {n} lines")
      for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
          if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
            problems.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {n} lines")
  return problems


def test_jaxsvd_follows_its_layering():
  assert layering_violations(REPO / "jaxsvd") == []


def test_experiments_follow_their_layering():
  assert layering_violations(REPO / "experiments", EXPERIMENTS) == []


def test_files_and_functions_stay_short():
  assert size_violations(REPO / "jaxsvd", REPO / "experiments") == []


def _write(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
  for rel, text in files.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(textwrap.dedent(text))
  return root / "jaxsvd"


@pytest.mark.parametrize("files, expected", [
    ({"jaxsvd/core/a.py": "from jaxsvd.linen import b\n", "jaxsvd/linen/b.py": ""}, "core may not import linen"),
    ({"jaxsvd/core/a.py": "def f():\n  import numpy\n"}, "jaxsvd.core.a:2: import inside a function"),
    ({"jaxsvd/core/a.py": "from jaxsvd.core import b\n", "jaxsvd/core/b.py": "from jaxsvd.core.a import x\n"},
     "import cycle: jaxsvd.core.a -> jaxsvd.core.b -> jaxsvd.core.a"),
    ({"jaxsvd/linen/a.py": "from jaxsvd.core import b\nb._hidden()\n", "jaxsvd/core/b.py": ""},
     "uses the private jaxsvd.core.b._hidden"),
    ({"jaxsvd/linen/a.py": "import jaxsvd\n", "jaxsvd/__init__.py": ""}, "imports the root package back up"),
    ({"jaxsvd/core/a.py": "from flax import nnx\n"}, "core may not import flax.nnx"),
    ({"jaxsvd/core/a.py": "import flax.linen as nn\n"}, "core may not import flax.linen"),
    ({"jaxsvd/pruning/a.py": "from jaxsvd.linen import b\n", "jaxsvd/linen/b.py": ""},
     "pruning is framework-neutral and may not import linen"),
    ({"jaxsvd/training/a.py": "from jaxsvd.nnx import b\n", "jaxsvd/nnx/b.py": ""},
     "training is framework-neutral and may not import nnx"),
    ({"jaxsvd/pruning/a.py": "import flax.linen as nn\n"}, "pruning may not import flax.linen"),
    ({"jaxsvd/training/a.py": "from flax import nnx\n"}, "training may not import flax.nnx"),
    ({"jaxsvd/nnx/a.py": "from jaxsvd.linen import b\n", "jaxsvd/linen/b.py": ""},
     "nnx and linen are peers: nnx may not import linen"),
    ({"jaxsvd/linen/a.py": "from jaxsvd.nnx import b\n", "jaxsvd/nnx/b.py": ""},
     "linen and nnx are peers: linen may not import nnx"),
    ({"jaxsvd/nnx/a.py": "import flax.linen as nn\n"}, "nnx may not import flax.linen"),
    ({"jaxsvd/linen/a.py": "from flax import nnx\n"}, "linen may not import flax.nnx"),
    ({"jaxsvd/training/a.py": "from experiments import train\n"}, "the library may not import experiments"),
])
def test_the_checker_finds_each_kind_of_violation(tmp_path, files, expected):
  problems = layering_violations(_write(tmp_path, {"jaxsvd/__init__.py": "", **files}))
  assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("files, expected", [
    ({"experiments/run/a.py": "from experiments import sweep\n", "experiments/sweep.py": ""},
     "run may not import the command experiments.sweep"),
    ({"experiments/report/a.py": "from experiments.run import loop\n", "experiments/run/loop.py": ""},
     "report may not import run"),
    ({"experiments/run/a.py": "from experiments.tasks import image_classification\n",
      "experiments/tasks/__init__.py": "", "experiments/tasks/image_classification.py": ""},
     "the modules of experiments.tasks are resolved by name"),
    ({"experiments/run/loop.py": "from experiments.run.methods import rank\n", "experiments/run/methods/rank.py": ""},
     "the modules of experiments.run.methods are resolved by name"),
    ({"experiments/run/a.py": "import matplotlib\n"}, "run may not import matplotlib"),
    ({"experiments/run/a.py": "from jaxsvd import data\n"}, "run may not import jaxsvd.data"),
    ({"experiments/sweeps/a.py": "def f():\n  import os\n"}, "experiments.sweeps.a:2: import inside a function"),
    ({"experiments/run/a.py": "from tests import helpers\n"}, "experiments may not import tests"),
])
def test_the_checker_finds_each_kind_of_violation_in_experiments(tmp_path, files, expected):
  _write(tmp_path, {"experiments/__init__.py": "", **files})
  problems = layering_violations(tmp_path / "experiments", EXPERIMENTS)
  assert any(expected in p for p in problems), problems


def test_the_checker_passes_clean_experiments(tmp_path):
  _write(tmp_path, {"experiments/__init__.py": "", "experiments/cifar_svd.py": "from experiments.run import loop\n",
                    "experiments/run/loop.py": "from experiments import tasks\nfrom experiments.report import a\n",
                    "experiments/run/methods/rank.py": "from experiments.run import loop\n",
                    "experiments/tasks/__init__.py": "", "experiments/tasks/image_classification.py":
                    "from experiments.tasks import Task\n", "experiments/report/a.py": "import matplotlib\n"})
  assert layering_violations(tmp_path / "experiments", EXPERIMENTS) == []


def test_the_frameworks_are_peers_above_the_neutral_subpackages():
  assert not ALLOWED["linen"] & {"nnx"} and not ALLOWED["nnx"] & {"linen"}
  assert all(not ALLOWED[name] & set(FRAMEWORKS) for name in NEUTRAL)
  assert {"core", "training", "pruning"} <= ALLOWED["linen"] & ALLOWED["nnx"]


def test_the_checker_passes_a_clean_tree(tmp_path):
  root = _write(tmp_path, {"jaxsvd/__init__.py": "from jaxsvd import core\n", "jaxsvd/core/__init__.py": "",
                           "jaxsvd/core/a.py": "import numpy\n", "jaxsvd/linen/b.py": "from jaxsvd.core import a\n"})
  assert layering_violations(root) == []
