"""``import jaxsvd`` stays cheap: the heavy libraries load only with the subpackage that uses them."""

import json
import subprocess
import sys

import pytest

HEAVY = ("orbax", "grain", "matplotlib", "tensorflow_datasets", "tensorboardX")
PROBE = "import sys, json, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"


def loaded_after(module: str) -> set[str]:
  """The top-level packages loaded in a fresh interpreter after ``import <module>``."""
  out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True,
                       timeout=120, check=True).stdout
  return set(json.loads(out.splitlines()[-1]))


def test_import_jaxsvd_loads_no_heavy_library():
  assert loaded_after("jaxsvd") & set(HEAVY) == set()


@pytest.mark.parametrize("module, heavy", [("jaxsvd.checkpoint", {"orbax"}), ("jaxsvd.data", set()),
                                           ("jaxsvd.data.streaming", {"grain", "orbax"})])  # grain imports orbax
def test_a_subpackage_loads_what_it_uses(module, heavy):
  assert loaded_after(module) & set(HEAVY) == heavy
