"""tensorflow-datasets access (``tfds.data_source``: ArrayRecord files, no TensorFlow to read).

Imported only when a run asks for ``data_source='tfds'`` (``jaxsvd.data.datasets.load_tfds`` resolves this module by
name) or streams a tfds dataset, so ``import jaxsvd.data`` does not load tensorflow-datasets.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


def source(name: str, split: str, data_dir: str | None = None):
  """``tfds.data_source(name, split)``: random access to a prepared tfds dataset.

  Args:
    name: the tfds dataset name, e.g. 'imagenet2012'.
    split: e.g. 'train' or 'validation'.
    data_dir: the tfds data directory; None uses tfds's default.

  Returns:
    The source; its elements are {'image': decoded (H, W, C) uint8, 'label': int, ...}.
  """
  return tfds.data_source(name, split=split, data_dir=data_dir)


def read_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """One split of a tfds image dataset fully in memory.

  Args:
    name: the tfds dataset name, e.g. 'cifar10'.
    split: 'train' or 'test'.
    data_dir: the tfds data directory; None uses tfds's default.

  Returns:
    (images (N, H, W, C) uint8, labels (N,) int32).
  """
  data = source(name, split, data_dir)
  items = [data[i] for i in range(len(data))]
  images = np.stack([np.asarray(x["image"], np.uint8) for x in items])
  return images.reshape(*images.shape[:3], -1), np.asarray([x["label"] for x in items], np.int32)


__all__ = ["read_split", "source"]
