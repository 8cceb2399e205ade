"""``import jaxsvd`` stays cheap: the heavy libraries load only with the subpackage that uses them, and the two
frameworks are peers: importing one loads nothing of the other."""

import functools
import json
import subprocess
import sys

import pytest

HEAVY = ("orbax", "grain", "matplotlib", "tensorflow_datasets", "tensorboardX")
PROBE = "import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"


@functools.cache
def modules_after(module: str) -> frozenset[str]:
  """Every module (dotted name) loaded in a fresh interpreter after ``import <module>``."""
  out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                       timeout=120, check=True).stdout
  return frozenset(json.loads(out.splitlines()[-1]))


def loaded_after(module: str) -> set[str]:
  """The top-level packages loaded in a fresh interpreter after ``import <module>``."""
  return {m.split(".")[0] for m in modules_after(module)}


def _under(modules: set[str], package: str) -> set[str]:
  return {m for m in modules if m == package or m.startswith(package + ".")}


def test_import_jaxsvd_loads_no_heavy_library_and_neither_framework():
  assert loaded_after("jaxsvd") & set(HEAVY) == set()
  loaded = modules_after("jaxsvd")  # the neutral subpackages only: linen, the zoo and nnx load on first use
  assert {"jaxsvd.pruning", "jaxsvd.training", "jaxsvd.core"} <= loaded
  assert _under(loaded, "jaxsvd.linen") | _under(loaded, "jaxsvd.nnx") | _under(loaded, "jaxsvd.models") == set()


@pytest.mark.parametrize("module, heavy", [("jaxsvd.checkpoint", {"orbax"}), ("jaxsvd.data", set()),
                                           ("jaxsvd.data.streaming", {"grain", "orbax"})])  # grain imports orbax
def test_a_subpackage_loads_what_it_uses(module, heavy):
  assert loaded_after(module) & set(HEAVY) == heavy


def test_the_frameworks_are_peers_when_imported():
  """``import jaxsvd.nnx`` loads no linen code of ours and no more of ``flax.linen`` than ``import flax.nnx`` alone
  (flax's NNX imports parts of linen itself); ``import jaxsvd.linen`` loads no NNX code, ours or flax's."""
  nnx, flax_nnx, linen = modules_after("jaxsvd.nnx"), modules_after("flax.nnx"), modules_after("jaxsvd.linen")
  assert _under(nnx, "jaxsvd.linen") == set() and _under(nnx, "jaxsvd.models") == set()
  assert _under(nnx, "flax.linen") <= _under(flax_nnx, "flax.linen")
  assert _under(linen, "jaxsvd.nnx") == set() and _under(linen, "flax.nnx") == set()
  assert "jaxsvd.nnx.calibration" in nnx and "jaxsvd.linen.compress" in linen  # the probes saw the subpackages

