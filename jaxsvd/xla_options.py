"""Per-compile XLA options that measured faster for jaxsvd's steps, and a ``jit`` that applies them.

XLA:CPU (jaxlib 0.10) hands convolutions, dots, reductions and elementwise fusions to YNNPACK
("library fusions"). For the CNN train steps here the YNNPACK convolutions are slower than XLA's
Eigen convolutions except at ≤ 16 channels, while its elementwise and reduce fusions are much faster than
XLA's own loops (BatchNorm statistics otherwise become ~140 small ``reduce-window`` loops per step
and the backward re-computes BN + residual chains inside the transposes that feed the weight-gradient
convolutions). Keeping convolutions in Eigen and everything else in YNNPACK gives, in one run
(``python -m benchmarks.xla_options``): ResNet-20 train step 0.69–0.73×, ResNet-18 0.65–0.70× of the
default-options time, with the same results to float tolerance (``tests/xla_options_test.py``).

The options are per compile (``jax.jit(..., compiler_options=...)``), never global:
  * only on the CPU backend, and only if this jaxlib accepts them (probed once; else defaults + a warning);
  * not when the user already set ``xla_cpu_experimental_ynn_fusion_type`` in ``XLA_FLAGS``;
  * ``JAXSVD_XLA_OPTIONS=0`` turns them off.
``jax.pmap`` takes no compiler options, so the pmap path runs with XLA's defaults.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS = {YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in ("INDIVIDUAL_DOT", "REDUCE", "ELTWISE"))}


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(jnp.zeros((), jnp.float32)).compile()
  except Exception as e:  # noqa: BLE001 - any rejection means: fall back to XLA's defaults
    logging.warning("jaxsvd: XLA options %s not accepted by this jaxlib (%s); using XLA defaults",
                    dict(options), str(e).splitlines()[0])
    return False
  return True


def tuned_options() -> dict[str, Any] | None:
  """The compiler options for jax's default backend, or None for XLA's defaults."""
  if jax.default_backend() != "cpu" or os.environ.get("JAXSVD_XLA_OPTIONS", "1") == "0":
    return None
  if YNN_FUSION_TYPE in os.environ.get("XLA_FLAGS", ""):
    return None  # the user chose; per-compile options would override their flag
  return dict(CPU_OPTIONS) if _accepted(tuple(CPU_OPTIONS.items())) else None


def jit(fn: Callable, **jit_kwargs: Any) -> Callable:
  """``jax.jit`` with ``tuned_options()`` for the default backend."""
  return jax.jit(fn, compiler_options=tuned_options(), **jit_kwargs)
