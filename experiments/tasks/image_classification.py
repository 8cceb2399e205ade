"""The run's input: in-memory arrays (``jaxsvd.data``: CIFAR, Fashion-MNIST) or a grain stream
(``jaxsvd.data.streaming``: ImageNet from tfds or from an ImageFolder tree), behind one interface for
``experiments.train``.

Both give ``input_shape``, ``num_train_batches()``, ``train_batches(seed, epoch, start)`` (the epoch's batches from
batch ``start`` on: a resume inside an epoch), ``eval_batches()``, ``local`` (whether batches are this process's part
only) and ``get_state()``/``set_state()`` (the stream's position, saved in the checkpoint's meta; None for the
in-memory pipeline, whose order is a function of (seed, epoch)) and ``contract()`` (the input contract a checkpoint and
a deploy artifact carry: ``jaxsvd.core.contract``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any

from jaxsvd import data
from jaxsvd.core.contract import InputContract, image_contract
from jaxsvd.data import streaming

STREAMED = data.STREAMED


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

