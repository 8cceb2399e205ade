"""Tasks (``experiments.tasks``): resolved by the config's ``task`` name, image classification by default, a second
task is one module; the run (``experiments/run/``) holds nothing image-specific."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys
import types

import pytest

from experiments import tasks
from experiments.configs import fashion_mnist
from experiments.run.plan import initial_architecture, make_plan
from experiments.tasks import image_classification

RUN = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "run"


def test_the_image_task_is_resolved_by_name_and_is_the_default():
  assert tasks.names() == ["image_classification", "language_model"]
  assert tasks.get("image_classification") is image_classification.TASK
  c = fashion_mnist.get_config()
  assert make_plan(c).task is image_classification.TASK
  del c["task"]  # a config written before tasks existed
  assert make_plan(c).task is image_classification.TASK


def test_an_unknown_task_is_one_line():
  c = fashion_mnist.get_config()
  c.task = "speech"
  with pytest.raises(ValueError, match=r"^task='speech' is not one of \('image_classification', 'language_model'\)$"):
    make_plan(c)


def test_a_second_task_is_one_module(monkeypatch):
  """A module ``experiments.tasks.<name>`` holding ``TASK`` is all the run needs: here a copy of the image task
  whose validation and model record are its own."""
  seen = []
  toy = types.ModuleType("experiments.tasks.toy")
  toy.TASK = dataclasses.replace(
      image_classification.TASK, name="toy", validate=lambda c: seen.append(c.model),
      architecture=lambda c, svd, shape, contract: image_classification.architecture(c, svd, shape, contract).replace(
          num_classes=3))
  monkeypatch.setitem(sys.modules, "experiments.tasks.toy", toy)
  monkeypatch.setattr(tasks, "names", lambda: ["image_classification", "toy"])
  tasks.get.cache_clear()
  try:
    c = fashion_mnist.get_config()
    c.task = "toy"
    plan = make_plan(c)
    assert plan.task is toy.TASK and seen == ["resnet8"]
    assert initial_architecture(c, plan, (28, 28, 1), {}).num_classes == 3
  finally:
    tasks.get.cache_clear()


def test_a_task_module_must_define_its_task(monkeypatch):
  broken = types.ModuleType("experiments.tasks.broken")
  broken.TASK = dataclasses.replace(image_classification.TASK, name="other")
  monkeypatch.setitem(sys.modules, "experiments.tasks.broken", broken)
  monkeypatch.setattr(tasks, "names", lambda: ["broken"])
  tasks.get.cache_clear()
  try:
    with pytest.raises(ValueError, match=r"must define TASK = Task\(name='broken'"):
      tasks.get("broken")
  finally:
    tasks.get.cache_clear()


def test_the_run_holds_nothing_image_specific():
  """The words of image classification and its libraries appear nowhere in experiments/run/ (the record's
  ``num_classes`` field, compared when a run resumes, is the one name it shares with the library's record)."""
  words = re.compile(r"\bimages?\b|accuracy|NUM_CLASSES|jaxsvd\.data|jaxsvd import data|jaxsvd\.models|"
                     r"image_classification")
  found = [f"{path.relative_to(RUN)}:{i}: {line.strip()}" for path in sorted(RUN.rglob("*.py"))
           for i, line in enumerate(path.read_text().splitlines(), 1) if words.search(line)]
  assert found == []
