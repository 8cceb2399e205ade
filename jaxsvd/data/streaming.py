"""Streaming input pipeline on grain: datasets larger than RAM (ImageNet), one shard per JAX process,
deterministic order, checkpointable position.

Why grain (not tf.data): it needs no TensorFlow, its ``MapDataset`` is random-access and lazy (each element
is a pure function of (seed, index), so the order is deterministic for any number of reader threads), and
its iterators have a small JSON-able state (``get_state``/``set_state``) that goes into our checkpoint.

The training stream (``train_stream``), as grain transformations of a random-access source:

    source.shuffle(seed).repeat()          global stream: epoch e is permutation π_(seed+e) of the records
      .random_map(preprocess, seed)        decode + augment; each element's RNG is keyed by its global index
      [p::P]                               process p of P takes every P-th element
      .to_iter_dataset(ReadOptions)        reader threads + prefetch buffer
      .batch(G / P).map(normalize)         process-local batch of G/P examples, float32

Global batch b is the elements [b·G, (b+1)·G) of the global stream, whatever P is: each process holds G/P of
them, and the set of examples (and their augmentation) in a global batch does not depend on the process count.
So the position is a global example count, and a checkpoint written by P processes resumes on P' processes
(``Stream.set_state`` converts it). Evaluation (``eval_stream``) pads the split to a multiple of G with masked
copies of element 0 and takes the same ``[p::P]`` slice.

Sources: ``ImageFolderSource`` (``root/<class>/<image>``, classes sorted), ``jaxsvd.data.tfds_io.source``
(``tfds.data_source``,
e.g. 'imagenet2012', ArrayRecord files), ``ArraySource`` (in-memory arrays: CIFAR/Fashion-MNIST as a stream).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import grain
import numpy as np

from jaxsvd.data import image_ops

IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PREPROCESS_KINDS = ("random_resized_crop", "center_crop", "pad_crop_flip", "none")


class ImageFolderSource:
  """A directory with one subdirectory per class (sorted names → labels 0, 1, ...), images inside, as a grain
  random-access source of {'image': encoded bytes, 'label': int32}."""

  def __init__(self, directory: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS):
    """Lists ``directory`` (files sorted within each class).

    Raises:
      FileNotFoundError: if ``directory`` does not exist or holds no class directory with an image.
    """
    if not os.path.isdir(directory):
      raise FileNotFoundError(f"image folder {directory} does not exist")
    self.classes = sorted(d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d)))
    self.items = [(os.path.join(directory, name, f), label) for label, name in enumerate(self.classes)
                  for f in sorted(os.listdir(os.path.join(directory, name))) if f.lower().endswith(extensions)]
    if not self.items:
      raise FileNotFoundError(f"image folder {directory} holds no <class>/<image{'|'.join(extensions)}> files")

  def __len__(self) -> int:
    return len(self.items)

  def __getitem__(self, index: int) -> dict:
    path, label = self.items[index]
    with open(path, "rb") as f:
      return {"image": f.read(), "label": np.int32(label)}


class ArraySource:
  """In-memory (N, H, W, C) uint8 images and (N,) labels as a grain source of {'image', 'label'}."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    return {"image": self.images[index], "label": np.int32(self.labels[index])}


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Decode + augment one example (a grain random map; ``rng`` is grain's per-element generator).

  kind: 'random_resized_crop' (+ flip; ImageNet training), 'center_crop' (ImageNet evaluation), 'pad_crop_flip'
  (CIFAR), 'none' (decode only). ``size`` is the output side for the two crops; ``channels`` 3 or 1.
  """
  kind: str
  size: int | None = None
  channels: int = 3

  def __post_init__(self):
    if self.kind not in PREPROCESS_KINDS:
      raise ValueError(f"preprocess: {self.kind!r} is not one of {PREPROCESS_KINDS}")
    if self.kind in ("random_resized_crop", "center_crop") and not self.size:
      raise ValueError(f"preprocess: {self.kind} needs an output size")

  def __call__(self, example: dict, rng: np.random.Generator | None = None) -> dict:
    image = image_ops.decode(example["image"], self.channels)
    if self.kind == "random_resized_crop":
      image = image_ops.flip(image_ops.random_resized_crop(image, rng, self.size), rng)
    elif self.kind == "center_crop":
      image = image_ops.resize_center_crop(image, self.size)
    elif self.kind == "pad_crop_flip":
      image = image_ops.pad_crop_flip(image, rng)
    out = {"image": np.ascontiguousarray(image), "label": np.int32(example["label"])}
    if "mask" in example:
      out["mask"] = example["mask"]
    return out


@dataclasses.dataclass(frozen=True)
class Normalize:
  """A uint8 (B, H, W, C) batch → float32 (x / 255 − mean) / std, per channel."""
  mean: Any
  std: Any

  def __call__(self, batch: dict) -> dict:
    mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
    image = (batch["image"].astype(np.float32) / 255.0 - mean) / std
    return {**batch, "image": image}


def _shard(shard: grain.sharding.ShardOptions | None) -> tuple[int, int]:
  shard = shard or grain.sharding.ShardByJaxProcess()
  return shard.shard_index, shard.shard_count


def _local_batch(global_batch_size: int, count: int) -> int:
  if global_batch_size % count:
    raise ValueError(f"batch_size {global_batch_size} is not divisible by the {count} processes")
  return global_batch_size // count


class Stream:
  """An endless iterator of process-local batches whose position can be saved and restored.

  ``get_state()`` is JSON-able: grain's iterator state plus the stream's seed, global batch size and process count;
  ``set_state`` accepts a state saved under another process count (same seed and global batch size).
  """

  def __init__(self, dataset: grain.IterDataset, seed: int, global_batch_size: int, process_count: int):
    self._iterator = iter(dataset)
    self.seed, self.global_batch_size, self.process_count = seed, global_batch_size, process_count

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict:
    return next(self._iterator)

  def get_state(self) -> dict:
    """{'grain': the grain iterator's state, 'seed', 'global_batch_size', 'process_count'}."""
    return {"grain": self._iterator.get_state(), "seed": self.seed, "global_batch_size": self.global_batch_size,
            "process_count": self.process_count}

  def set_state(self, state: dict) -> None:
    """Continues from ``state`` (from ``get_state``, possibly of a run with another process count).

    Raises:
      ValueError: if the saved seed or global batch size differs from this stream's, or the saved position is not
        a whole number of global batches when the process count changed.
    """
    for field in ("seed", "global_batch_size"):
      if state[field] != getattr(self, field):
        raise ValueError(f"data stream state: saved {field}={state[field]} but this run has {getattr(self, field)}")
    grain_state = dict(state["grain"])
    if state["process_count"] != self.process_count:
      consumed = grain_state["next_index"] * state["process_count"]  # global examples consumed
      if consumed % self.global_batch_size:
        raise ValueError(f"data stream state: position {consumed} is not a whole number of global batches")
      grain_state["next_index"] = consumed // self.process_count
    self._iterator.set_state(grain_state)


def train_stream(source, global_batch_size: int, seed: int, preprocess: Preprocess, mean, std,
                 shard: grain.sharding.ShardOptions | None = None, num_threads: int = 8,
                 prefetch: int = 256) -> Stream:
  """The endless, shuffled, augmented training stream of this process (see the module doc).

  Args:
    source: a random-access source of {'image', 'label'} (``len`` and ``[i]``).
    global_batch_size: examples per global batch (all processes together), a multiple of the process count.
    seed: shuffle and augmentation seed, 0 ≤ seed < 2**32.
    preprocess: the per-example decode + augmentation.
    mean: per-channel mean subtracted from the [0, 1]-scaled images.
    std: per-channel standard deviation they are divided by.
    shard: which shard this process reads (default ``grain.sharding.ShardByJaxProcess()``).
    num_threads: grain reader threads.
    prefetch: elements buffered ahead.

  Returns:
    The ``Stream`` of {'image': float32 (G/P, H, W, C), 'label': int32 (G/P,)}.

  Raises:
    ValueError: if the batch is not divisible by the process count.
  """
  index, count = _shard(shard)
  local = _local_batch(global_batch_size, count)
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat().random_map(preprocess, seed=seed)
  ds = ds[index::count].to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  return Stream(ds.batch(local, drop_remainder=True).map(Normalize(mean, std)), seed, global_batch_size, count)


class _Padded:
  """``source`` extended to ``length`` elements by copies of element 0; adds 'mask' (1 real, 0 padding)."""

  def __init__(self, source, length: int):
    self.source, self.length = source, length

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index: int) -> dict:
    real = index < len(self.source)
    return {**self.source[index if real else 0], "mask": np.float32(real)}


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
  """Global evaluation batches covering ``num_examples`` (the last one padded).

  Args:
    num_examples: the size of the evaluation split.
    global_batch_size: examples per global batch (all processes together).

  Returns:
    ceil(num_examples / global_batch_size), as an int.
  """
  return -(-num_examples // global_batch_size)


def eval_stream(source, global_batch_size: int, preprocess: Preprocess, mean, std,
                shard: grain.sharding.ShardOptions | None = None, num_threads: int = 8,
                prefetch: int = 256) -> Iterator[dict]:
  """This process's part of every evaluation batch, in order, the split padded to whole global batches.

  Args:
    source: a random-access source of {'image', 'label'} (``len`` and ``[i]``); padded with masked copies of
      element 0.
    global_batch_size: examples per global batch (all processes together), a multiple of the process count.
    preprocess: the per-example decode + preprocessing, called without a generator (so a deterministic kind:
      'center_crop' or 'none').
    mean: per-channel mean subtracted from the [0, 1]-scaled images.
    std: per-channel standard deviation they are divided by.
    shard: which shard this process reads (default ``grain.sharding.ShardByJaxProcess()``).
    num_threads: grain reader threads.
    prefetch: elements buffered ahead.

  Returns:
    An iterator of ``num_eval_batches`` batches {'image', 'label', 'mask' (float32, 0 on padding)}, G/P each.

  Raises:
    ValueError: if the batch is not divisible by the process count.
  """
  index, count = _shard(shard)
  local = _local_batch(global_batch_size, count)
  padded = _Padded(source, num_eval_batches(len(source), global_batch_size) * global_batch_size)
  ds = grain.MapDataset.source(padded).map(preprocess)[index::count]
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  return iter(ds.batch(local, drop_remainder=True).map(Normalize(mean, std)))


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "PREPROCESS_KINDS", "ImageFolderSource",
           "ArraySource", "Preprocess", "Normalize", "Stream", "train_stream", "num_eval_batches", "eval_stream"]
