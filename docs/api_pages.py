"""Writes the API reference pages (``docs/api/``): each subpackage's headline names (its ``__all__``) and every one of
its modules with the members of the module's ``__all__`` (run by ``conf.py``)."""

import importlib
import os
import pkgutil
import re
import types

SUBPACKAGES = ("core", "linen", "nnx", "models", "training", "pruning", "checkpoint", "deploy", "data")


def modules_of(package: types.ModuleType) -> list[str]:
  """Every module of a subpackage, the ones its ``__init__`` does not import too (``data.streaming``), and those of
  its own packages (``nnx.kinds.conv_transpose``)."""
  return [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]


def page(name: str) -> str:
  """One subpackage's page: its docstring (the module table), its headline names, then each module's members."""
  package = importlib.import_module(f"jaxsvd.{name}")
  modules = modules_of(package)
  headline = [n for n in package.__all__ if not isinstance(getattr(package, n), types.ModuleType)]
  lines = [f"# jaxsvd.{name}", "", "```{eval-rst}", f".. automodule:: jaxsvd.{name}", "   :no-members:", "```", ""]
  if headline:
    lines += ["Exported here: " + ", ".join(f"`{n}`" for n in headline) + ".", ""]
  for module in modules:
    lines += [f"## {module}", "", "```{eval-rst}", f".. automodule:: {module}", "   :members:", "```", ""]
  return "\n".join(lines)


def index() -> str:
  """The API index: the root package's names, then one page per subpackage."""
  return "\n".join([
      "# API reference", "",
      "Generated from each subpackage's `__all__`; every listed name has a docstring (`tests/project/api_docs_test.py`).", "",
      "```{eval-rst}", ".. automodule:: jaxsvd", "   :no-members:", "```", "",
      "```{toctree}", ":maxdepth: 1", "", *SUBPACKAGES, "```", ""])


_LITERAL = re.compile(r"(``.+?``)")
_MARKUP = re.compile(r"(?<!\\)([|*])")


def escape_markup(line: str) -> str:
  """``line`` with RST's substitution and emphasis characters (| and *) escaped outside ````literal```` spans."""
  parts = _LITERAL.split(line)
  return "".join(p if i % 2 else _MARKUP.sub(r"\\\1", p) for i, p in enumerate(parts))


def render_docstring(app, what, name, obj, options, lines) -> None:
  """The ``autodoc-process-docstring`` hook: module docstrings verbatim, others with | and * escaped.

  Args:
    app: the Sphinx application (unused).
    what: the object's kind ('module', 'function', 'class', ...).
    name: its qualified name (unused).
    obj: the object (unused).
    options: autodoc's options (unused).
    lines: the docstring's lines, edited in place.
  """
  del app, name, obj, options
  if what == "module":
    lines[:] = ["::", "", *(f"   {line}" for line in lines), ""] if lines else []
  else:
    lines[:] = with_literal_tables(lines)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def with_literal_tables(lines: list[str]) -> list[str]:
  """Docstring lines as RST: a line ending in ':' followed by a more indented block (a table of cases, formulas)
  introduces a literal block; every other line has its markup characters escaped (``escape_markup``).

  Args:
    lines: the docstring's lines after napoleon (field lines start with ':' and are left as they are).

  Returns:
    The new lines.
  """
  out, i = [], 0
  while i < len(lines):
    line = lines[i]
    nxt = next((later for later in lines[i + 1:] if later.strip()), "")
    opens = line.rstrip().endswith(":") and not line.lstrip().startswith(":") and nxt
    if not (opens and _indent(nxt) > _indent(line)):
      out.append(escape_markup(line))
      i += 1
      continue
    out += [escape_markup(line.rstrip()[:-1]) + "::", ""]
    i += 1
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > _indent(line)):
      out.append(lines[i])
      i += 1
    out.append("")
  return out


def write(directory: str) -> None:
  """Writes ``index.md`` and one page per subpackage into ``directory`` (only files whose text changed)."""
  os.makedirs(directory, exist_ok=True)
  pages = {"index": index(), **{name: page(name) for name in SUBPACKAGES}}
  for name, text in pages.items():
    path = os.path.join(directory, f"{name}.md")
    if not os.path.exists(path) or open(path).read() != text:
      with open(path, "w") as f:
        f.write(text)


__all__ = ["SUBPACKAGES", "escape_markup", "index", "modules_of", "page", "render_docstring", "with_literal_tables",
           "write"]
