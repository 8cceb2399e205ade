"""Sweep configs (``python -m experiments.sweep --config=NAME``): which runs a sweep makes, by method, budget and seed.

A sweep config is a ``ConfigDict`` with these fields (docs/experiments.md#sweeps):

  methods     {name: ``method(...)``}: a base run config by name, its overrides, the command, the budget field
  budgets     the compression factors b (e.g. (2.0, 4.0): 2× and 4× fewer MACs) of every method with a budget field
  seeds       every point runs once per seed (``seed=S``)
  axes        ((field, (values, ...)), ...): more axes over every point (any run config field); a method's own
              ``axes`` add axes over its points only (e.g. the energy threshold of the prunes of one trained run)
  common      overrides ('field=value', as ``--config.field=value``) of every point, before the method's own
  reference   the method whose MACs the reduction column is relative to (its mean over seeds)
  latency     enabled, batch, repeats, rules: the deployed artifacts timed side by side at the end
"""

from __future__ import annotations

import ml_collections

COMMANDS = ("train", "compress", "from_scratch", "lm")
BUDGET_AS = ("b", "1/b")


def method(config: str, command: str = "train", overrides: tuple[str, ...] = (), budget: str = "",
           budget_as: str = "b", budgets: tuple[float, ...] = (), source: str = "",
           axes=()) -> ml_collections.ConfigDict:
  """One method of a sweep.

  Args:
    config: the base run config, by name (``fashion_mnist_budget``) or file, as ``--config`` takes it.
    command: 'train' (``experiments.cifar_svd``), 'compress' (``experiments.compress``), 'from_scratch'
      (``experiments.pruning_from_scratch``) or 'lm' (``experiments.lm_svd``, a language model).
    overrides: 'field=value' overrides of the base config (after the sweep's ``common``).
    budget: the field each budget b sets ('': no budget, the method runs once per seed).
    budget_as: 'b' (the field is set to b) or '1/b' (to 1/b, e.g. ``from_scratch.budget``, a fraction of MACs).
    budgets: this method's budgets (empty: the sweep's ``budgets``).
    source: command 'compress': the method whose point of the same seed (and budget, if it has one) is compressed;
      it runs first and its directory becomes ``source``.
    axes: ((field, (values, ...)), ...): axes over this method's points only, after the sweep's ``axes`` (a compress
      method's points with different values of its own axes share one source point).

  Returns:
    The method's ``ConfigDict``.
  """
  return ml_collections.ConfigDict(dict(config=config, command=command, overrides=tuple(overrides), budget=budget,
                                        budget_as=budget_as, budgets=tuple(float(b) for b in budgets), source=source,
                                        axes=tuple((field, tuple(values)) for field, values in axes)))


def sweep(methods: dict, budgets=(2.0, 4.0), seeds=(0, 1), common=(), reference: str = "dense",
          axes=()) -> ml_collections.ConfigDict:
  """A sweep config.

  Args:
    methods: {name: ``method(...)``} (names: letters, digits, '_'; they name the run directories).
    budgets: the compression factors of the methods with a budget field.
    seeds: the seeds every point runs with.
    common: 'field=value' overrides of every point.
    reference: the method the MACs reduction is relative to.
    axes: ((field, (values, ...)), ...) more axes over every point.

  Returns:
    The sweep ``ConfigDict`` (module doc).
  """
  c = ml_collections.ConfigDict()
  c.methods = ml_collections.ConfigDict(methods, sort_keys=False)  # the order written is the order run
  c.budgets = tuple(float(b) for b in budgets)
  c.seeds = tuple(int(s) for s in seeds)
  c.axes = tuple((field, tuple(values)) for field, values in axes)
  c.common = tuple(common)
  c.reference = reference
  c.latency = ml_collections.ConfigDict(dict(enabled=True, batch=128, repeats=5, rules=("auto", "merged", "measured")))
  return c


__all__ = ["COMMANDS", "BUDGET_AS", "method", "sweep"]
