"""Tiny datasets written in the real on-disk formats, and tiny experiment configs."""

from __future__ import annotations

import gzip
import os

import numpy as np

from jaxsvd.data import FASHION_FILES


def learnable_images(n: int, shape, num_classes: int, seed: int):
  """Images whose class sets the brightness of one horizontal band (learnable in a few steps)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n).astype(np.uint8)
  images = rng.integers(0, 60, (n, *shape)).astype(np.uint8)
  band = shape[0] // num_classes
  for i, y in enumerate(labels):
    images[i, y * band:(y + 1) * band] = 220
  return images, labels


def write_idx(path: str, array: np.ndarray) -> None:
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(directory: str, n_train: int = 256, n_test: int = 64) -> str:
  os.makedirs(directory, exist_ok=True)
  train = learnable_images(n_train, (28, 28), 10, 0)
  test = learnable_images(n_test, (28, 28), 10, 1)
  arrays = {"train_images": train[0], "train_labels": train[1], "test_images": test[0], "test_labels": test[1]}
  for key, stem in FASHION_FILES.items():
    write_idx(os.path.join(directory, stem + ".gz"), arrays[key])
  return directory


TINY = {"batch_size": 32, "eval_batch_size": 48, "num_epochs": 4, "max_steps_per_epoch": 3,
        "progress_bar": False, "plots": False, "tensorboard": False, "checkpoint.async_save": False,
        "pruning.enabled": True, "pruning.strategy": "ratio", "pruning.reduce_by": 0.25, "pruning.start": 2,
        "pruning.every": 1, "finetune_epochs": 1, "final_prune.energy": 0.3}


def tiny_config(data_dir: str, **overrides):
  """The quick Fashion-MNIST config shrunk to a few steps per epoch on tiny data."""
  from experiments.configs import fashion_mnist

  c = fashion_mnist.get_config()
  c.data_dir = data_dir
  for key, value in {**TINY, **overrides}.items():
    target = c
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


def cli_flags(data_dir: str, **overrides) -> list[str]:
  """The same configuration as ``tiny_config`` expressed as command-line flags."""
  return [f"--config.data_dir={data_dir}"] + [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()]
