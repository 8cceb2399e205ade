"""Image classification, the first task (``experiments.tasks``): CIFAR-10/100, Fashion-MNIST and ImageNet images,
a classifier of the model zoo (``jaxsvd.models``), cross-entropy, accuracy.

The data: in-memory arrays (``jaxsvd.data``: CIFAR, Fashion-MNIST) or a grain stream (``jaxsvd.data.streaming``:
ImageNet from tfds or from an ImageFolder tree), behind one interface (``experiments.tasks.Inputs``). Both give
``input_shape``, ``num_train_batches()``, ``train_batches(seed, epoch, start)`` (the epoch's batches from batch
``start`` on: a resume inside an epoch), ``eval_batches()``, ``local`` (whether batches are this process's part only)
and ``get_state()``/``set_state()`` (the stream's position, saved in the checkpoint's meta; None for the in-memory
pipeline, whose order is a function of (seed, epoch)) and ``contract()`` (the input contract a checkpoint and a deploy
artifact carry: ``jaxsvd.core.contract``).

Before anything is compiled the data is loaded and checked against the config (``load_data``): it exists, is
consistent and fits the config. ``train_subset`` / ``test_subset``: None or -1 use the whole split; N ≥ 1 the first N
examples (at most the split's size); 0 and other negatives are errors.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from typing import Any

from experiments.tasks import Task
from jaxsvd import data
from jaxsvd.core.contract import InputContract, image_contract
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.validate import check_choice, check_min_int
from jaxsvd.data import streaming
from jaxsvd.models import MODEL_NAMES, check_options
from jaxsvd.training.parallel import DataParallel

STREAMED = data.STREAMED
ALL = -1  # the subset sentinel: the whole split


@dataclasses.dataclass
class InMemory:
  """The whole dataset in host memory; every process builds the same global batches."""
  c: Any
  ds: data.Dataset
  mean: Any
  std: Any
  local = False

  @property
  def input_shape(self):
    return self.ds.input_shape

  def num_train_batches(self) -> int:
    return data.num_train_batches(len(self.ds.train_images), self.c.batch_size, self.c.max_steps_per_epoch)

  def train_batches(self, seed, epoch: int, start: int = 0):
    return data.train_batches(self.ds.train_images, self.ds.train_labels, self.c.batch_size, seed, epoch, self.mean,
                              self.std, self.c.augment, self.c.max_steps_per_epoch, start)

  def eval_batches(self):
    return data.eval_batches(self.ds.test_images, self.ds.test_labels, self.c.eval_batch_size, self.mean, self.std)

  def get_state(self):
    return None

  def set_state(self, state) -> None:
    del state

  def describe(self) -> str:
    """One line for the start-up log: dataset, sizes, where from, normalization."""
    shape = "x".join(map(str, self.input_shape))
    return (f"{self.ds.name}: {len(self.ds.train_images):,} train / {len(self.ds.test_images):,} test images of "
            f"{shape} from {self.c.data_dir or 'the default location'}, normalized by mean "
            f"{_floats(self.mean)} / std {_floats(self.std)} ({self.c.normalization})")

  def contract(self) -> InputContract:
    """Raw uint8 images as stored → the training normalization (mean/std of ``normalization``), class names."""
    return image_contract(self.c.dataset, self.input_shape, self.mean, self.std)


def _floats(values) -> str:
  return "[" + ", ".join(f"{float(v):.3f}" for v in values) + "]"


def sources(c) -> tuple[Any, Any]:
  """(train, eval) sources of a streamed dataset: tfds ('tfds': ``tfds.data_source``) or, for 'auto'/'local', an
  ImageFolder tree ``data_dir/train/<class>/*``, ``data_dir/val/<class>/*``."""
  if c.data_source == "tfds":
    return tuple(data.load_tfds_module().source(c.dataset, split, c.data_dir) for split in ("train", "validation"))
  root = c.data_dir or "."
  return tuple(streaming.ImageFolderSource(os.path.join(root, split)) for split in ("train", "val"))


class Streamed:
  """One endless grain stream for the whole run (``jaxsvd.data.streaming.train_stream``, seeded by ``c.seed``); an
  epoch is the next ``num_train_batches()`` batches of it. Batches are this process's part (``local``)."""
  local = True

  def __init__(self, c):
    self.c = c
    self.train_source, self.eval_source = sources(c)
    size, threads = c.input.image_size, c.input.threads
    self.input_shape = (size, size, 3)
    self.stream = streaming.train_stream(
        self.train_source, c.batch_size, c.seed, streaming.Preprocess("random_resized_crop", size),
        streaming.IMAGENET_MEAN, streaming.IMAGENET_STD, num_threads=threads, prefetch=c.input.prefetch)

  def num_train_batches(self) -> int:
    return data.num_train_batches(len(self.train_source), self.c.batch_size, self.c.max_steps_per_epoch)

  def train_batches(self, seed, epoch: int, start: int = 0):
    del seed, epoch  # the stream's own position decides (restored mid-epoch by ``set_state``)
    return itertools.islice(self.stream, self.num_train_batches() - start)

  def eval_batches(self):
    return streaming.eval_stream(self.eval_source, self.c.eval_batch_size,
                                 streaming.Preprocess("center_crop", self.c.input.image_size), streaming.IMAGENET_MEAN,
                                 streaming.IMAGENET_STD, num_threads=self.c.input.threads)

  def describe(self) -> str:
    """One line for the start-up log: dataset, sizes, where from, crops."""
    size = self.c.input.image_size
    return (f"{self.c.dataset} (streamed): {len(self.train_source):,} train / {len(self.eval_source):,} evaluation "
            f"images from {self.c.data_dir or self.c.data_source}, {size}x{size} crops, ImageNet mean/std")

  def contract(self) -> InputContract:
    """Raw uint8 images → ImageNet's mean/std, after the evaluation crop (shorter side to size / 0.875, center)."""
    names = getattr(self.eval_source, "classes", None)
    return image_contract(self.c.dataset, self.input_shape, streaming.IMAGENET_MEAN, streaming.IMAGENET_STD, names,
                          resize="center_crop")

  def get_state(self) -> dict:
    return self.stream.get_state()

  def set_state(self, state: dict | None) -> None:
    if state is None:
      raise ValueError("the checkpoint has no data stream position (it was written by the in-memory pipeline)")
    self.stream.set_state(state)


def subset_size(field: str, value: int | None) -> int | None:
  """The number of examples ``value`` asks for: None for the whole split (None or ``ALL``).

  Args:
    field: the config field (``train_subset`` / ``test_subset``), put in errors.
    value: its value.

  Returns:
    None or an int ≥ 1.

  Raises:
    ValueError: unless ``value`` is None, -1 or an int ≥ 1.
  """
  if value is None or (value == ALL and not isinstance(value, bool)):
    return None
  try:
    check_min_int(field, value, 1)
  except ValueError:
    raise ValueError(f"{field} must be an int >= 1, or -1 / None for the whole split, got {value!r}") from None
  return value


def check_fits(c, ds: data.Dataset) -> None:
  """Subset sizes and ``batch_size`` against the loaded splits.

  Args:
    c: the experiment config (``train_subset``, ``test_subset``, ``batch_size``, ``data_dir``).
    ds: the full dataset.

  Returns:
    None.

  Raises:
    ValueError: one line naming the field if a subset is larger than its split or ``batch_size`` larger than the
      training examples used.
  """
  where = f"data_dir={c.data_dir}" if c.data_dir else ds.name
  train = subset_size("train_subset", c.train_subset)
  test = subset_size("test_subset", c.test_subset)
  for field, size, split in (("train_subset", train, ds.train_images), ("test_subset", test, ds.test_images)):
    if size is not None and size > len(split):
      raise ValueError(f"{field}={size} is more than the {len(split)} examples of {where}")
  used = len(ds.train_images) if train is None else train
  if c.batch_size > used:
    raise ValueError(f"batch_size={c.batch_size} is larger than the {used} training examples used "
                     f"({'train_subset' if train else where})")


def load_data(c) -> data.Dataset:
  """The config's dataset, checked (``data.load_dataset``, ``check_fits``) and cut to its subsets.

  Args:
    c: the experiment config.

  Returns:
    The ``data.Dataset`` the run trains and evaluates on.

  Raises:
    ValueError, FileNotFoundError: one line naming the field or file at fault.
  """
  ds = data.load_dataset(c.dataset, c.data_dir, c.data_source)
  check_fits(c, ds)
  return ds.subset(subset_size("train_subset", c.train_subset), subset_size("test_subset", c.test_subset))


def validate(c) -> None:
  """One-line errors for the task's config fields: model, dataset, data source and location, normalization, model
  options, subsets.

  Args:
    c: the experiment config.

  Returns:
    None.

  Raises:
    ValueError: one line naming the first bad field.
  """
  check_choice("model", c.model, MODEL_NAMES)
  check_choice("dataset", c.dataset, data.DATASETS)
  check_choice("data_source", c.data_source, data.SOURCES)
  if c.data_dir is not None and not c.data_dir:
    raise ValueError("data_dir is empty: name a directory, or leave it unset (None) for the default location")
  check_choice("normalization", c.normalization, data.NORMALIZATIONS)
  check_options(c.model, c.model_options)
  subset_size("train_subset", c.train_subset)
  subset_size("test_subset", c.test_subset)


def inputs(c) -> InMemory | Streamed:
  """The run's data: a stream for the streamed datasets, else the checked dataset in memory, normalized by the
  config's ``normalization``.

  Args:
    c: the experiment config.

  Returns:
    ``Streamed`` or ``InMemory``.

  Raises:
    ValueError, FileNotFoundError: one line naming the field or file at fault.
  """
  if c.dataset in STREAMED:
    return Streamed(c)
  ds = load_data(c)
  mean, std = data.dataset_normalization(c.dataset, ds.train_images, c.normalization)
  return InMemory(c, ds, mean, std)


def architecture(c, svd: SVDSpec | None, input_shape, contract: InputContract | None = None) -> Architecture:
  """The record of the config's classifier of the model zoo for ``input_shape`` images (ranks empty).

  Args:
    c: the experiment config (``model``, ``dataset``, ``widths``, ``model_options`` and ``compute_dtype`` are read).
    svd: the run's SVD spec, or None for a dense model.
    input_shape: the (H, W, C) image shape.
    contract: the input contract of the run's data, or None.

  Returns:
    The ``Architecture``.
  """
  return Architecture(c.model, data.NUM_CLASSES[c.dataset], tuple(input_shape), svd, {}, {},
                      None if c.widths is None else dict(c.widths),
                      options=dict(c.model_options) if c.model_options else None, compute_dtype=c.compute_dtype,
                      input_contract=None if contract is None else contract.to_json())


def parallel(c) -> DataParallel:
  """The classifier's train and eval steps (cross-entropy + the regularizers, accuracy; ``jaxsvd.training``) under
  ``c.parallel`` on ``c.num_devices`` devices.

  Args:
    c: the experiment config.

  Returns:
    The ``DataParallel``.
  """
  return DataParallel(c.parallel, c.num_devices)


def evaluate(sums: dict) -> dict:
  """The test metrics of the eval steps' sums.

  Args:
    sums: {'loss_sum', 'correct', 'count'} summed over the test set (host values).

  Returns:
    {'test_loss', 'test_accuracy'}: means over the test examples.
  """
  return {"test_loss": sums["loss_sum"] / sums["count"], "test_accuracy": sums["correct"] / sums["count"]}


def summary(history: Sequence[dict]) -> dict:
  """The summary's task fields.

  Args:
    history: the run's metrics rows.

  Returns:
    {'test_accuracy': the last row's}.
  """
  return {"test_accuracy": history[-1]["test_accuracy"]}


def summary_rows(summary: dict) -> list[tuple[str, str]]:
  """The summary table's task rows.

  Args:
    summary: the end-of-run summary.

  Returns:
    [('test accuracy', its value)].
  """
  return [("test accuracy", f"{summary['test_accuracy']:.4f}")]


def epoch_text(row: dict) -> str:
  """An epoch's accuracies and losses for its log line: the train loss named for what it is (CE plus the λ-weighted
  regularizer terms) with the CE beside it; the CE alone when no regularizer was on.

  Args:
    row: the epoch's metrics row.

  Returns:
    'train loss (CE + λ·reg) L, CE C, acc A | test acc T' or 'train CE C, acc A | test acc T'.
  """
  loss, ce = row["train_loss"], row.get("train_ce")
  if ce is None:
    text = f"train loss (CE + λ·reg) {loss:.4f}"
  elif abs(loss - ce) <= 1e-6 * max(abs(ce), 1.0):
    text = f"train CE {ce:.4f}"
  else:
    text = f"train loss (CE + λ·reg) {loss:.4f}, CE {ce:.4f}"
  return f"{text}, acc {row['train_accuracy']:.4f} | test acc {row['test_accuracy']:.4f}"


TASK = Task("image_classification", validate, inputs, architecture, parallel, evaluate, summary, summary_rows,
            epoch_text, best_metric="test_accuracy", progress_metrics=("loss", "accuracy"), examples="images")
