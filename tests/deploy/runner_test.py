"""The artifact's runner needs exactly jax, numpy and flatbuffers: it says so in one line when one is missing, and runs
with only those three (a fresh virtual environment, slow variant)."""

import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxsvd import deploy
from jaxsvd.core.contract import image_contract
from jaxsvd.deploy import artifact, runner

SHAPE = (8, 8, 1)
BLOCK = textwrap.dedent("""
    import importlib.abc, runpy, sys
    class Block(importlib.abc.MetaPathFinder):  # this interpreter without the named package
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == {blocked!r}:
          raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Block())
    """)


class Tiny(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(nn.relu(nn.Conv(3, (3, 3))(x)).mean((1, 2)))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
  """(artifact directory, uint8 images, their logits from the model itself)."""
  root = tmp_path_factory.mktemp("runner")
  model = Tiny()
  x = np.zeros((1, *SHAPE), np.float32)
  variables = model.init(jax.random.key(0), x)
  folded = deploy.fold(model, variables, x)
  contract = image_contract("toy", SHAPE, [0.5], [0.25])
  directory = artifact.write(folded, folded.plan("merged"), str(root / "deploy"), platforms=("cpu",),
                             extra_meta={"input": contract.to_json()})
  images = np.random.default_rng(0).integers(0, 256, (3, *SHAPE)).astype(np.uint8)
  np.save(root / "x.npy", images)
  return directory, images, np.asarray(model.apply(variables, contract.normalize(images)))


def _run(code, cwd):
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(cwd))


@pytest.mark.parametrize("blocked", ["flatbuffers", "jax", "numpy"])
def test_a_missing_requirement_is_one_line_naming_the_pip_command(deployed, tmp_path, blocked):
  directory, _, _ = deployed
  script = os.path.join(directory, "deploy_runner.py")
  expected = (f"deploy_runner needs jax, numpy, flatbuffers; {blocked} is missing: pip install jax numpy "
              f"flatbuffers")
  proc = _run(BLOCK.format(blocked=blocked) + f"sys.argv = ['deploy_runner.py', {directory!r}, 'x.npy', 'y.npy']\n"
              f"runpy.run_path({script!r}, run_name='__main__')", tmp_path)
  assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [f"error: {expected}"], proc.stderr[-2000:]
  assert not (tmp_path / "y.npy").exists()
  imported = _run(BLOCK.format(blocked=blocked) + f"sys.path.insert(0, {directory!r})\n"
                  "try:\n  import deploy_runner\nexcept ImportError as err:\n  print(err)", tmp_path)
  assert imported.stdout.strip() == expected, imported.stderr[-2000:]


def test_jax_export_deserialization_needs_flatbuffers(deployed, tmp_path):
  """Why flatbuffers is named: without it jax.export cannot read the artifact (jax does not install it)."""
  directory, _, _ = deployed
  proc = _run(BLOCK.format(blocked="flatbuffers") + "import jax\n"
              f"jax.export.deserialize(bytearray(open({directory!r} + '/model.stablehlo', 'rb').read()))", tmp_path)
  assert proc.returncode == 1 and "flatbuffers" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]


def test_the_command_line_says_where_it_wrote_and_the_shape(deployed, tmp_path):
  directory, images, expected = deployed
  np.save(tmp_path / "x.npy", images)
  proc = subprocess.run([sys.executable, os.path.join(directory, "deploy_runner.py"), directory, "x.npy", "logits"],
                        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines() == [f"wrote {tmp_path / 'logits.npy'}: logits of shape (3, 4) (float32)"]
  chex.assert_trees_all_close(np.load(tmp_path / "logits.npy"), expected, atol=1e-5, rtol=1e-5)


def _pip(venv, *packages):
  return subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", *packages],
                        capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # builds a virtual environment and installs jax into it from the package index (about a minute)
def test_runner_in_a_fresh_virtual_environment_with_only_its_requirements(deployed, tmp_path):
  """``pip install jax numpy`` alone: the one-line error; then ``pip install flatbuffers``: the logits."""
  directory, images, expected = deployed
  venv = str(tmp_path / "venv")
  subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=300)
  installed = _pip(venv, "jax", "numpy")
  if installed.returncode:
    pytest.skip(f"pip install jax numpy failed (no package index reachable?): "
                f"{(installed.stderr.strip().splitlines() or [''])[-1]}")
  python = os.path.join(venv, "bin", "python")
  np.save(tmp_path / "x.npy", images)
  command = [python, os.path.join(directory, "deploy_runner.py"), directory, "x.npy", "y.npy"]
  without = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert without.returncode == 1 and without.stderr.strip().splitlines() == [
      f"error: deploy_runner needs jax, numpy, flatbuffers; flatbuffers is missing: {runner.INSTALL}"], without.stderr
  assert _pip(venv, *runner.REQUIREMENTS).returncode == 0
  listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
  assert "flax" not in listed and "jaxsvd" not in listed
  proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
  assert proc.returncode == 0 and proc.stdout.startswith(f"wrote {tmp_path / 'y.npy'}: logits of shape (3, 4)"), \
      proc.stderr[-2000:]
  chex.assert_trees_all_close(np.load(tmp_path / "y.npy"), expected, atol=1e-5, rtol=1e-5)
