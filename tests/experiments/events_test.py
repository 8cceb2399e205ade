"""The registry of event types (``experiments.run.events``): every module of ``run/methods/`` imported by name, the
firing order, a forgotten ``@register`` caught, a new type picked up by the plan without any other change."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from experiments.configs import fashion_mnist
from experiments.run import events
from experiments.run.methods import masking, narrow, rank, slimming
from experiments.run.plan import make_plan
from jaxsvd.core.record import Architecture


def test_every_method_module_registers_its_type_in_firing_order():
  assert events.types() == (rank.RankPrune, slimming.Slimming, masking.MaskPrune, narrow.Narrow)
  assert {kind for kind in events.REGISTRY} >= {"rank", "slimming", "masks", "narrow"}


def test_an_unregistered_event_type_of_a_method_module_is_named():
  class Forgotten(events.Event):
    kind: ClassVar[str] = "forgotten"

    @classmethod
    def from_config(cls, c, phases):
      return []

    def due(self, epoch):
      return False

    def apply(self, state, architecture, ctx):
      raise NotImplementedError

  Forgotten.__module__ = f"{events.METHODS}.forgotten"
  assert events.unregistered([Forgotten, rank.RankPrune]) == [Forgotten]
  Forgotten.__module__ = "tests.elsewhere"  # outside run/methods/ registration is the author's choice
  assert events.unregistered([Forgotten]) == []


@dataclasses.dataclass(frozen=True)
class Toy(events.Event):
  """A toy method: fires after epoch 1 and adds a summary field."""
  kind: ClassVar[str] = "toy"

  @classmethod
  def from_config(cls, c, phases):
    return [cls()] if c.get("toy", False) else []

  def due(self, epoch):
    return epoch == 1

  def apply(self, state, architecture, ctx):
    return events.Outcome(state, architecture, {"kind": self.kind}, "toy")

  @classmethod
  def summary(cls, architecture, params):
    return {"toy": True}


def test_a_registered_type_reaches_the_plan_optimizer_and_summary(monkeypatch):
  monkeypatch.setitem(events.REGISTRY, "toy", (5, Toy))  # as @events.register(order=5) does
  assert events.types()[0] is Toy
  c = fashion_mnist.get_config()
  with c.unlocked():
    c.toy = True
  plan = make_plan(c)
  assert isinstance(plan.events[0], Toy) and [e.kind for e in plan.events[1:]] == ["rank", "rank"]
  assert events.summary(Architecture("resnet8", 10, (28, 28, 1), None, {}, {}), {}) == {"toy": True}


def test_register_refuses_a_second_type_of_one_kind_and_non_events():
  with pytest.raises(ValueError, match="event kind 'rank' is registered twice"):
    events.register(order=1)(Toy.__class__("RankPrune", (Toy,), {"kind": "rank"}))
  with pytest.raises(TypeError, match="decorates Event subclasses"):
    events.register(order=1)(dict)
