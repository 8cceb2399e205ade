"""Test setup: 4 forced host devices (multi-device tests), set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
