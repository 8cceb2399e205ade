"""Every public name (every name in every ``__all__`` of jaxsvd) has a docstring, with Args/Returns where it takes
arguments / returns a value (the rule optax's docs build enforces; ours runs as a test and in ``.ci/run``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import jaxsvd


def public_modules() -> list[types.ModuleType]:
  """jaxsvd and every module under it (``deploy.runner`` too: it is copied into artifacts but documented)."""
  names = ["jaxsvd", *(m.name for m in pkgutil.walk_packages(jaxsvd.__path__, "jaxsvd."))]
  return [importlib.import_module(n) for n in names]


def _parameters(fn) -> list[str]:
  try:
    signature = inspect.signature(fn)
  except (TypeError, ValueError):
    return []
  return [p for p in signature.parameters if p not in ("self", "cls")]


def _returns_value(fn) -> bool:
  annotation = inspect.signature(fn).return_annotation
  return annotation not in (inspect.Signature.empty, None, "None") and not inspect.isclass(fn)


def function_problems(name: str, fn) -> list[str]:
  """What ``fn``'s docstring lacks: any text; 'Args:' if it takes arguments; 'Returns:' if it returns a value."""
  doc = inspect.getdoc(fn) or ""
  if not doc:
    return [f"{name}: no docstring"]
  problems = []
  if _parameters(fn) and "Args:" not in doc:
    problems.append(f"{name}: takes {_parameters(fn)} but has no Args: section")
  if _returns_value(fn) and "Returns:" not in doc and "Yields:" not in doc and len(doc.splitlines()) > 1:
    problems.append(f"{name}: returns a value but has no Returns: section")
  return problems


def undocumented(module: types.ModuleType) -> list[str]:
  """The documentation problems of every name in ``module.__all__``.

  A one-line docstring that says what a function returns counts as its Returns (the optax convention for short
  accessors); constants are documented in their module's docstring, so only callables and classes are checked,
  and only jaxsvd's own.
  """
  problems = []
  for attr in getattr(module, "__all__", ()):
    obj = getattr(module, attr)
    qualified = f"{module.__name__}.{attr}"
    if not isinstance(obj, types.ModuleType) and not getattr(obj, "__module__", "").startswith("jaxsvd"):
      continue  # a library's object under our name (e.g. an initializer): documented where it is defined
    if isinstance(obj, types.ModuleType):
      problems += [] if inspect.getdoc(obj) else [f"{qualified}: module without a docstring"]
    elif inspect.isclass(obj):
      problems += [] if inspect.getdoc(obj) else [f"{qualified}: class without a docstring"]
    elif callable(obj):
      problems += function_problems(qualified, obj)
  return problems


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_every_module_has_an_explicit_all(module):
  assert isinstance(getattr(module, "__all__", None), (list, tuple)), f"{module.__name__} has no __all__"
  missing = [n for n in module.__all__ if not hasattr(module, n)]
  assert not missing, f"{module.__name__}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("module", public_modules(), ids=lambda m: m.__name__)
def test_every_public_name_is_documented(module):
  assert undocumented(module) == []


def test_the_check_finds_a_missing_section():
  def bare(x):
    return x

  def documented(x):
    """Doubles.

    Args:
      x: a number.

    Returns:
      2x.
    """
    return 2 * x

  assert function_problems("bare", bare) == ["bare: no docstring"]
  assert function_problems("documented", documented) == []
  documented.__doc__ = "Doubles x.\n\nMore."
  assert function_problems("d", documented) == ["d: takes ['x'] but has no Args: section"]
