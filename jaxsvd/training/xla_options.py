"""Per-compile XLA options that measured faster for jaxsvd's steps, and a ``jit`` that applies them.

XLA:CPU (jaxlib 0.10) hands convolutions, dots, reductions and elementwise fusions to YNNPACK
("library fusions"). For the CNN train steps here the YNNPACK convolutions are slower than XLA's
Eigen convolutions except at ≤ 16 channels, while its elementwise and reduce fusions are much faster than
XLA's own loops (BatchNorm statistics otherwise become ~140 small ``reduce-window`` loops per step
and the backward re-computes BN + residual chains inside the transposes that feed the weight-gradient
convolutions). Keeping convolutions in Eigen and everything else in YNNPACK gives, in one run
(``python -m benchmarks.xla_options``): ResNet-20 train step 0.69–0.73×, ResNet-18 0.65–0.70× of the
default-options time, with the same results to float tolerance (``tests/training/xla_options_test.py``).

The options are per compile (``jax.jit(..., compiler_options=...)``), never global:
  * only on the CPU backend, read at each use (``jit``: the default backend; ``autotuned_jit``: the platform of the
    call's committed arguments, ``platform_of``; on GPU/TPU it neither passes options nor times candidates), and
    only if this jaxlib accepts them (probed once; else defaults + a warning);
  * not when the user already set ``xla_cpu_experimental_ynn_fusion_type`` in ``XLA_FLAGS``;
  * ``JAXSVD_XLA_OPTIONS=0`` turns them off.
``jax.pmap`` takes no compiler options, so the pmap path runs with XLA's defaults.

The tuned options lose where most of the time is in very narrow convolutions (YNNPACK beats Eigen
at ≤ 16 channels: a ResNet-20 pruned to 10 % rank evaluates 1.2× slower with them). ``autotuned_jit``
therefore measures instead of guessing, once per argument signature: it compiles the function with
the tuned and with the default options, runs its next real calls on the two in turn, and keeps the
faster. The cost is one extra compile per signature; no call is repeated. ``variants`` widens the
search to equivalent versions of the function (e.g. SVD layers run as one conv or as two): which
wins depends on the surrounding fusions and the options, so it is measured on the whole step, too.

Inference adds a third set, ``INFERENCE_CPU_OPTIONS`` (``candidate_options(inference=True)``): YNNPACK dots
and reductions without its elementwise fusions. With ELTWISE, a conv → 1×1 conv (or dot) → bias → ReLU chain,
i.e. a factored SVD layer, is swallowed whole into one YNNPACK fusion that runs the convolutions in YNNPACK:
measured per layer (batch 128, 16×16×128, rank 64) 172 ms against 84 ms without ELTWISE and 141 ms for the
merged conv. At 16–64 channels the tuned set does well when the second factor is a 1×1 conv (as ``jaxsvd.deploy``
runs it) rather than a dot (8×8×64, rank 32: 5.6 vs 11.1 ms), so which set wins is measured, per whole model.
Training keeps ELTWISE (it carries BatchNorm; there, conv or dot for the second factor makes no difference).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS = {YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in ("INDIVIDUAL_DOT", "REDUCE", "ELTWISE"))}
INFERENCE_CPU_OPTIONS = {YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in ("INDIVIDUAL_DOT", "REDUCE"))}


@functools.cache
def _accepted(options: tuple[tuple[str, str], ...]) -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(jnp.zeros((), jnp.float32)).compile()
  except Exception as e:  # noqa: BLE001 - any rejection means: fall back to XLA's defaults
    logging.warning("jaxsvd: XLA options %s not accepted by this jaxlib (%s); using XLA defaults",
                    dict(options), str(e).splitlines()[0])
    return False
  return True


def platform_of(args: Any = ()) -> str:
  """The platform a jitted call on ``args`` runs on: that of the first committed array's devices (placed with
  ``jax.device_put`` or sharded), else jax's default backend (where uncommitted arrays run).

  Args:
    args: a pytree of call arguments.

  Returns:
    'cpu', 'gpu', 'tpu', ... (``jax.Device.platform``).
  """
  for x in jax.tree.leaves(args):
    if isinstance(x, jax.Array) and getattr(x, "committed", False):
      return next(iter(x.sharding.device_set)).platform
  return jax.default_backend()


def tuned_options(platform: str | None = None) -> dict[str, Any] | None:
  """The compiler options for ``platform`` (None: jax's default backend), or None for XLA's defaults: the option
  sets here are XLA:CPU's, so every other platform gets None.

  Args:
    platform: 'cpu', 'gpu', 'tpu', ...; None reads ``jax.default_backend()`` now (never cached).

  Returns:
    A copy of ``CPU_OPTIONS`` on CPU (unless turned off, overridden in ``XLA_FLAGS`` or rejected), else None.
  """
  platform = jax.default_backend() if platform is None else platform
  if platform != "cpu" or os.environ.get("JAXSVD_XLA_OPTIONS", "1") == "0":
    return None
  if YNN_FUSION_TYPE in os.environ.get("XLA_FLAGS", ""):
    return None  # the user chose; per-compile options would override their flag
  return dict(CPU_OPTIONS) if _accepted(tuple(CPU_OPTIONS.items())) else None


def jit(fn: Callable, **jit_kwargs: Any) -> Callable:
  """``jax.jit`` with ``tuned_options()`` for the default backend (read now; on GPU/TPU plain ``jax.jit``).

  Args:
    fn: the function to compile.
    **jit_kwargs: further ``jax.jit`` arguments (not ``compiler_options``).

  Returns:
    The jitted function.
  """
  return jax.jit(fn, compiler_options=tuned_options(), **jit_kwargs)


def autotuned_jit(fn: Callable, **kwargs: Any) -> "AutotunedJit":
  """``AutotunedJit(fn, **kwargs)`` (kwargs: static_argnums, donate_argnums, trials, variants, options).

  Args:
    fn: the function to compile.
    **kwargs: ``AutotunedJit``'s keyword arguments.

  Returns:
    The ``AutotunedJit``.
  """
  return AutotunedJit(fn, **kwargs)


def describe(options: Mapping[str, Any] | None) -> str:
  """'tuned', 'inference', 'default' (None) or 'custom': which option set ``options`` is.

  Args:
    options: a compiler options mapping, or None for XLA's defaults.

  Returns:
    'default' for None; 'tuned' if it equals ``tuned_options()`` (where those apply); 'inference' if it equals
    ``INFERENCE_CPU_OPTIONS``; else 'custom'.
  """
  if options is None:
    return "default"
  names = {"tuned": tuned_options(), "inference": INFERENCE_CPU_OPTIONS}
  return next((name for name, known in names.items() if known is not None and dict(options) == dict(known)), "custom")


def candidate_options(inference: bool = False, platform: str | None = None) -> list[dict[str, Any] | None]:
  """The option sets ``autotuned_jit`` chooses from: the tuned ones (where they apply) and XLA's defaults;
  with ``inference`` also ``INFERENCE_CPU_OPTIONS`` (where the tuned ones apply and this jaxlib accepts it).

  Args:
    inference: whether to add ``INFERENCE_CPU_OPTIONS`` to the candidates.
    platform: as in ``tuned_options`` (None: the default backend).

  Returns:
    ``[None]`` where ``tuned_options(platform)`` is None (every platform but CPU); else
    ``[tuned, INFERENCE_CPU_OPTIONS, None]`` (inference, if accepted) or ``[tuned, None]``; None stands for XLA's
    defaults.
  """
  tuned = tuned_options(platform)
  if tuned is None:
    return [None]
  if inference and _accepted(tuple(INFERENCE_CPU_OPTIONS.items())):
    return [tuned, dict(INFERENCE_CPU_OPTIONS), None]
  return [tuned, None]


@dataclasses.dataclass(frozen=True)
class Choice:
  """What ``AutotunedJit`` runs for one signature: keyword ``variant`` values and compiler ``options``."""
  variant: Mapping[str, Any]
  options: dict[str, Any] | None


def _variant_grid(variants: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
  if not variants:
    return [{}]
  names = list(variants)
  return [dict(zip(names, values, strict=True)) for values in itertools.product(*(variants[n] for n in names))]


class AutotunedJit:
  """``jax.jit`` that picks, per argument signature, the fastest candidate by timing real calls.

  Candidates are ``fn(*args, **variant)`` for each combination of ``variants`` (keyword → values that
  all compute the same result to float tolerance; none: just ``fn``) compiled with each of
  ``options`` (default ``candidate_options()``). A new signature is traced once per variant (``lower``);
  variants that lower to the same program are compiled once. The next calls go to the candidates in turn, each call a
  real one whose result is returned (so donation and training steps are fine, nothing is run twice); the first
  round warms up, the next ``trials`` rounds are timed, and the candidate with the smallest median
  serves that signature from then on. ``choices`` maps each tuned signature to its ``Choice``. The option sets
  and the tuning apply only where the call runs on CPU (``platform_of`` its arguments): on a GPU/TPU the first
  variant is compiled once with XLA's defaults and used without timing.
  """

  def __init__(self, fn: Callable, *, static_argnums: tuple[int, ...] = (), donate_argnums: tuple[int, ...] = (),
               trials: int = 3, variants: Mapping[str, Sequence[Any]] | None = None,
               options: Sequence[dict[str, Any] | None] | None = None):
    self._variants = [(v, jax.jit(functools.partial(fn, **v), static_argnums=static_argnums,
                                  donate_argnums=donate_argnums)) for v in _variant_grid(variants)]
    self._static = tuple(static_argnums)
    self._trials = trials
    self._options = list(options) if options is not None else None
    self._chosen: dict[Any, Any] = {}
    self._tuning: dict[Any, _Trial] = {}
    self.choices: dict[Any, Choice] = {}

  def _signature(self, args) -> tuple[Any, tuple]:
    dynamic = tuple(a for i, a in enumerate(args) if i not in self._static)
    leaves, treedef = jax.tree.flatten(dynamic)
    avals = tuple((jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False), getattr(x, "sharding", None))
                  for x in leaves)
    return (tuple(args[i] for i in self._static), treedef, avals), dynamic

  def _candidates(self, args) -> list[tuple[Choice, Callable]]:
    # Per call: the option sets are XLA:CPU's and the tuning is CPU's; a GPU/TPU call runs the first variant,
    # compiled with XLA's defaults, untimed.
    on_cpu = platform_of(args) == "cpu"
    lowered, seen = [], set()
    for variant, jitted in self._variants if on_cpu else self._variants[:1]:
      low = jitted.lower(*args)
      text = low.as_text() if len(self._variants) > 1 else ""
      if text not in seen:
        seen.add(text)
        lowered.append((variant, low))
    option_sets = [None] if not on_cpu else self._options if self._options is not None else candidate_options()
    return [(Choice(v, o), low.compile(compiler_options=o)) for v, low in lowered for o in option_sets]

  def __call__(self, *args):
    key, dynamic = self._signature(args)
    if key in self._chosen:
      return self._chosen[key](*dynamic)
    if key not in self._tuning:
      self._tuning[key] = _Trial(self._candidates(args), self._trials)
    trial = self._tuning[key]
    out = trial(dynamic)
    if trial.done:
      self.choices[key], self._chosen[key] = trial.best()
      del self._tuning[key]
    return out


def fastest(candidates: Sequence[tuple[Any, Callable]], args: Sequence[Any], trials: int = 3) -> tuple[Any, Callable]:
  """The (key, function) pair of ``candidates`` whose ``function(*args)`` has the smallest median time: each is
  called in turn, one warm-up round and then ``trials`` timed rounds (as ``AutotunedJit`` on real calls).

  Args:
    candidates: (key, function) pairs; the key is returned as it is, never called.
    args: the positional arguments every function is called with (results are waited for, then discarded).
    trials: timed rounds after the warm-up round.

  Returns:
    The winning (key, function) pair (ties: the earlier candidate); a single candidate is returned without being
    called.
  """
  trial = _Trial(list(candidates), trials)
  while not trial.done:
    trial(tuple(args))
  return trial.best()


def alternate(fns: Mapping[Any, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict:
  """Median seconds per call of each no-argument function, timed side by side: ``warmup`` untimed calls each, then
  ``repeats`` rounds calling every function once in turn (results waited for), so drift hits all alike.

  Args:
    fns: {key: function of no arguments}.
    repeats: timed rounds (>= 1).
    warmup: untimed calls of each function first (compilation, autotuning).

  Returns:
    {key: median seconds per call}.
  """
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  times = {k: [] for k in fns}
  for _ in range(max(repeats, 1)):
    for k, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[k].append(time.perf_counter() - start)
  return {k: statistics.median(v) for k, v in times.items()}


class _Trial:
  """Round-robin timing of candidate executables over real calls: one warm-up round, then ``trials`` rounds."""

  def __init__(self, candidates: list, trials: int):
    self.candidates, self.calls = candidates, 0
    self.rounds = 0 if len(candidates) == 1 else trials + 1
    self.times: list[list[float]] = [[] for _ in candidates]

  @property
  def done(self) -> bool:
    return self.calls >= self.rounds * len(self.candidates)

  def __call__(self, dynamic):
    i = self.calls % len(self.candidates)
    start = time.perf_counter()
    out = jax.block_until_ready(self.candidates[i][1](*dynamic))
    if self.calls >= len(self.candidates):
      self.times[i].append(time.perf_counter() - start)
    self.calls += 1
    return out

  def best(self):
    if len(self.candidates) == 1:
      return self.candidates[0]
    return self.candidates[min(range(len(self.candidates)), key=lambda i: statistics.median(self.times[i]))]


__all__ = ["YNN_FUSION_TYPE", "CPU_OPTIONS", "INFERENCE_CPU_OPTIONS", "platform_of", "tuned_options", "jit",
           "autotuned_jit", "describe", "candidate_options", "Choice", "AutotunedJit", "fastest", "alternate"]
