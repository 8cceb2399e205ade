"""The package layering of jaxsvd/, read from the source's AST (nothing is imported).

Rules (docs/design.md):
  - a subpackage imports only the subpackages below it (``ALLOWED``); nothing imports back up;
  - the frameworks are peers: ``linen`` and ``nnx`` never import each other (neither ``jaxsvd.<other>`` nor
    ``flax.<other>``), and the framework-neutral subpackages (``NEUTRAL``: core, training, pruning) import neither
    framework, ours or flax's (they look framework code up by name: ``jaxsvd.core.registry``);
  - the module import graph has no cycle;
  - no import statement inside a function or class (lazy loading is the root's PEP 562 ``__getattr__`` and plugins
    resolved by name with ``importlib``);
  - no private name (``_x``) of one module is used by another;
  - the library imports no experiment, benchmark or test;
  - no file over 400 lines and no function over 60 lines, in jaxsvd/ and experiments/.
"""

from __future__ import annotations

import ast
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


def _subpackage(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


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


def layering_violations(root: pathlib.Path) -> list[str]:
  """Every broken rule in the package at ``root``, one line each."""
  modules, problems, graph = _modules(root), [], {}
  for name, path in modules.items():
    tree = ast.parse(path.read_text(), str(path))
    graph[name] = {t for _, t in _imports(tree, modules) if t != name}
    problems += [f"{name}:{line}: import inside a function or class" for line in _nested_imports(tree)]
    problems += [f"{name}: uses the private {use}" for use in _private_uses(tree, modules)]
    source = _subpackage(name)
    for node, target in _imports(tree, modules):
      dest = _subpackage(target)
      if source and dest and dest != source and dest not in ALLOWED[source]:
        problems.append(f"{name}:{node.lineno}: {source} may not import {dest} ({target})")
      problems += [f"{name}:{node.lineno}: {why}" for why in _framework_rule(source, dest)]
      if source and target == root.name:
        problems.append(f"{name}:{node.lineno}: imports the root package back up")
    problems += [f"{name}: {source} may not import {banned}" for banned in _external_imports(tree)
                 if banned.startswith(FORBIDDEN_EXTERNAL.get(source, ("\0",)))]
    problems += [f"{name}: the library may not import {banned}" for banned in _external_imports(tree)
                 if banned.split(".")[0] in OUTSIDE_THE_LIBRARY]
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


def test_the_frameworks_are_peers_above_the_neutral_subpackages():
  assert not ALLOWED["linen"] & {"nnx"} and not ALLOWED["nnx"] & {"linen"}
  assert all(not ALLOWED[name] & set(FRAMEWORKS) for name in NEUTRAL)
  assert {"core", "training", "pruning"} <= ALLOWED["linen"] & ALLOWED["nnx"]


def test_the_checker_passes_a_clean_tree(tmp_path):
  root = _write(tmp_path, {"jaxsvd/__init__.py": "from jaxsvd import core\n", "jaxsvd/core/__init__.py": "",
                           "jaxsvd/core/a.py": "import numpy\n", "jaxsvd/linen/b.py": "from jaxsvd.core import a\n"})
  assert layering_violations(root) == []
