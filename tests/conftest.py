"""Test setup: 4 forced host devices (multi-device tests), set before jax is imported."""

import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# No test downloads anything (jaxsvd.data.downloads): the mirror is a closed local port, the cache is in the run's
# temporary folder (removed at the end).
os.environ["JAXSVD_FASHION_MNIST_URL"] = "http://127.0.0.1:9/"
os.environ["JAXSVD_CACHE"] = os.path.join(
    tempfile.gettempdir(), f"jaxsvd-tests-{os.getppid() if os.environ.get('PYTEST_XDIST_WORKER') else os.getpid()}",
    "cache")


def _shared_compilation_cache() -> None:
  """One persistent XLA compilation cache per pytest run, shared by the xdist workers and every subprocess a test
  starts (they inherit the environment): the suite compiles the same small models in many tests, and a hit skips
  XLA's compile (tracing and lowering still run, so trace counts and compile logs are unchanged). Keys are content
  hashes of the program, options and XLA flags, so a hit runs the same executable a fresh compile would build."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  run = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()  # xdist workers: the controller's
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"jaxsvd-tests-{run}", "jax_cache")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


_shared_compilation_cache()

import logging  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_jaxsvd_logger():
  """Tests that run a CLI in-process set up the 'jaxsvd' logger (propagate off, a handler on the captured stderr,
  which pytest closes after the test); later tests would then log into a closed stream and caplog would see
  nothing. Each test gets the logger back as it found it."""
  logger = logging.getLogger("jaxsvd")
  saved = logger.propagate, logger.level, list(logger.handlers)
  yield
  logger.propagate, logger.handlers[:] = saved[0], saved[2]
  logger.setLevel(saved[1])


def pytest_sessionfinish(session):
  """The controller (not an xdist worker) removes the run's compilation cache and download cache."""
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    for cache in (os.environ["JAX_COMPILATION_CACHE_DIR"], os.environ["JAXSVD_CACHE"]):
      if os.path.basename(os.path.dirname(cache)).startswith("jaxsvd-tests-"):
        shutil.rmtree(os.path.dirname(cache), ignore_errors=True)
