"""Datasets as in-memory uint8 arrays, and a vectorized, seeded NumPy batch pipeline.

Sources: Fashion-MNIST IDX files (Debian `dataset-fashion-mnist`, a data_dir, or downloaded once into the cache:
``jaxsvd.data.downloads``), the original CIFAR-10/100
binary or python archives (extracted or .tar.gz) in a local data dir, and tensorflow-datasets
(`tfds.data_source`, for users with internet).
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import os
import zlib
from typing import Iterator

import numpy as np

from jaxsvd.core.validate import check_choice, check_dataset
from jaxsvd.data import cifar_archives, downloads
from jaxsvd.data.image_ops import crop_flip_draws, random_crop_flip

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10, "imagenet2012": 1000}
STREAMED = ("imagenet2012",)  # read by jaxsvd.data.streaming (experiments/tasks/image_classification.py), never loaded into memory
DATASETS = tuple(NUM_CLASSES)
SOURCES = ("auto", "local", "tfds")
TFDS_MODULE = "jaxsvd.data.tfds_io"  # resolved by name: only data_source='tfds' imports tensorflow-datasets
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
                 "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


@dataclasses.dataclass
class Dataset:
  """An in-memory dataset: the train and test splits as uint8 (N, H, W, C) images and int32 (N,) labels, with the
  dataset's name and number of classes.
  """
  name: str
  train_images: np.ndarray  # (N, H, W, C) uint8
  train_labels: np.ndarray  # (N,) int32
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int

  @property
  def input_shape(self) -> tuple[int, int, int]:
    """The (H, W, C) shape of one image."""
    return tuple(self.train_images.shape[1:])

  def subset(self, train: int | None, test: int | None) -> "Dataset":
    """The dataset cut to its first ``train`` training and first ``test`` test examples.

    Args:
      train: how many training examples to keep; None keeps them all.
      test: how many test examples to keep; None keeps them all.

    Returns:
      A new ``Dataset`` whose arrays are slices of this one's.
    """
    return dataclasses.replace(self, train_images=self.train_images[:train], train_labels=self.train_labels[:train],
                               test_images=self.test_images[:test], test_labels=self.test_labels[:test])


def read_idx(path: str) -> np.ndarray:
  """An IDX file (optionally gzipped) as a uint8 array with the shape its header gives.

  Args:
    path: the file; a name ending in ``.gz`` is read through gzip.

  Returns:
    The array, with the dimensions given in the header.

  Raises:
    ValueError: if the file cannot be read (truncated or corrupt gzip, I/O error), is not an unsigned-byte IDX
      file, or its size does not match its header.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError; a truncated .gz an EOFError
    raise ValueError(f"{path} cannot be read, truncated or corrupt ({type(err).__name__}: {err})") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file")
  ndim = data[3]
  dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
  body = np.frombuffer(data, np.uint8, offset=min(4 + 4 * ndim, len(data)))
  if body.size != int(np.prod(dims)):
    raise ValueError(f"{path}: header says {dims} but holds {body.size} bytes")
  return body.reshape(dims)


def _find(directory: str, stem: str) -> str | None:
  for name in (stem, stem + ".gz"):
    if os.path.exists(os.path.join(directory, name)):
      return os.path.join(directory, name)
  return None


def check_data_dir(data_dir: str) -> None:
  """Raises FileNotFoundError (one line naming ``data_dir``) unless ``data_dir`` is an existing directory.

  Args:
    data_dir: the path to check.

  Raises:
    FileNotFoundError: if ``data_dir`` does not exist or is not a directory.
  """
  if not os.path.exists(data_dir):
    raise FileNotFoundError(f"data_dir={data_dir} does not exist")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"data_dir={data_dir} is not a directory")


def _fashion_split(paths: dict[str, str], split: str) -> tuple[np.ndarray, np.ndarray]:
  images, labels = read_idx(paths[f"{split}_images"]), read_idx(paths[f"{split}_labels"])
  if images.ndim != 3 or labels.ndim != 1:
    raise ValueError(f"{paths[f'{split}_images']} / {paths[f'{split}_labels']}: expected (N, H, W) images and (N,) "
                     f"labels, found shapes {images.shape} and {labels.shape}")
  if len(images) != len(labels):
    raise ValueError(f"{paths[f'{split}_images']} holds {len(images)} images but {paths[f'{split}_labels']} "
                     f"{len(labels)} labels")
  return images[..., None], labels.astype(np.int32)


def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
  """Fashion-MNIST from its four IDX files (each optionally gzipped).

  With ``data_dir``, only ``data_dir`` and ``data_dir/fashion-mnist`` are searched (never a default location, never
  a download); without it, ``FASHION_MNIST_DIRS`` (where the Debian package installs it), then the download cache
  (``downloads.cache_dir()/fashion-mnist``), and when neither holds all four files they are downloaded into the cache
  (``downloads.fetch_fashion_mnist``: official mirror, SHA-256 verified, progress on stderr) and used from there.

  Args:
    data_dir: the directory holding the files, or None for the default location.

  Returns:
    The ``Dataset``, images with a trailing channel axis of 1.

  Raises:
    FileNotFoundError: one line saying which files are expected, where, and which are missing; without
      ``data_dir``, why the download failed and the two offline ways (the apt package, ``--config.data_dir``).
    ValueError: if a file is unreadable, or images and labels disagree in count or shape.
  """
  if data_dir:
    check_data_dir(data_dir)
  cache = str(downloads.cache_dir() / "fashion-mnist")
  candidates = [data_dir, os.path.join(data_dir, "fashion-mnist")] if data_dir else [*FASHION_MNIST_DIRS, cache]
  for directory in candidates:
    paths = {k: _find(directory, v) for k, v in FASHION_FILES.items()}
    if all(paths.values()):
      train, test = _fashion_split(paths, "train"), _fashion_split(paths, "test")
      return Dataset("fashion_mnist", *train, *test, 10)
  names = ", ".join(FASHION_FILES.values())
  if data_dir:
    missing = [v for v in FASHION_FILES.values() if not _find(data_dir, v)]
    lacks = ("holds none of Fashion-MNIST's four files" if len(missing) == len(FASHION_FILES)
             else f"lacks Fashion-MNIST's {', '.join(missing)}")
    raise FileNotFoundError(f"data_dir={data_dir} {lacks}: put all of {names} (each optionally .gz) in it or in its "
                            f"fashion-mnist/ folder")
  try:
    folder = downloads.fetch_fashion_mnist(cache)
  except downloads.DownloadError as err:
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {candidates} (data_dir is unset) and the download failed ({err}): install it "
        f"with `apt-get install dataset-fashion-mnist` or set --config.data_dir to a directory holding {names} (each "
        f"optionally .gz)") from None
  paths = {k: str(folder / (v + ".gz")) for k, v in FASHION_FILES.items()}
  return Dataset("fashion_mnist", *_fashion_split(paths, "train"), *_fashion_split(paths, "test"), 10)


def load_cifar_local(name: str, data_dir: str) -> Dataset:
  """CIFAR-10 or CIFAR-100 from the original archives in a local directory.

  The binary version (extracted folder, else its .tar.gz) is preferred over the python version; CIFAR-100
  gets its fine labels.

  Args:
    name: 'cifar10' or 'cifar100'.
    data_dir: the directory holding the extracted folder or the archive.

  Returns:
    The ``Dataset`` (32×32×3 images).

  Raises:
    KeyError: if ``name`` is not a CIFAR dataset.
    FileNotFoundError: if ``data_dir`` is missing, neither version is in it, or a batch file is missing.
    ValueError: if an archive or a batch file is corrupt.
  """
  check_data_dir(data_dir)
  return Dataset(name, *cifar_archives.read_cifar(name, data_dir), NUM_CLASSES[name])


def load_tfds_module():
  """The tensorflow-datasets access module (``jaxsvd.data.tfds_io``), imported on first use (a plugin by name).

  Returns:
    The module.

  Raises:
    ImportError: if tensorflow-datasets (or a part it imports) is missing.
  """
  return importlib.import_module(TFDS_MODULE)


def load_tfds(name: str, data_dir: str | None = None) -> Dataset:
  """A dataset read through tensorflow-datasets (``tfds.data_source``), both splits fully into memory.

  Args:
    name: the tfds name ('cifar10', 'cifar100' or 'fashion_mnist').
    data_dir: the tfds data directory; None uses tfds's default.

  Returns:
    The ``Dataset`` of the 'train' and 'test' splits.

  Raises:
    ValueError: one line if tensorflow-datasets (or a part it needs: array_record, TensorFlow to prepare the data)
      is missing or the dataset cannot be read.
  """
  try:
    tfds_io = load_tfds_module()
    return Dataset(name, *tfds_io.read_split(name, "train", data_dir), *tfds_io.read_split(name, "test", data_dir),
                   NUM_CLASSES[name])
  except Exception as err:  # noqa: BLE001 -- tfds fails in many ways (imports, downloads, preparation)
    first = (str(err).strip().splitlines() or [""])[0]
    hint = f"pip install {err.name}" if isinstance(err, ModuleNotFoundError) and err.name else (
        "tfds reads prepared data (array_record) and prepares it once with TensorFlow: pip install tensorflow-cpu")
    raise ValueError(f"data_source='tfds' cannot load {name} ({type(err).__name__}: {first}); {hint}, or use "
                     f"data_source='local' with --config.data_dir") from None


def load_dataset(name: str, data_dir: str | None = None, source: str = "auto") -> Dataset:
  """The dataset ``name`` from ``source``, checked (``check_dataset``).

  'tfds' reads it with ``load_tfds``; 'auto' and 'local' both read local files: Fashion-MNIST with
  ``load_fashion_mnist`` (``data_dir``, or the default location when it is None), CIFAR with ``load_cifar_local``
  in ``data_dir`` (default '.').

  Args:
    name: one of ``DATASETS``.
    data_dir: where the data is, or None for the defaults above.
    source: one of ``SOURCES``.

  Returns:
    The ``Dataset``.

  Raises:
    ValueError: if ``name`` or ``source`` is not one of the known choices, or the data is unreadable or
      inconsistent (counts, shapes, label range).
    FileNotFoundError: if the local files are missing.
  """
  check_choice("dataset", name, DATASETS)
  check_choice("data_source", source, SOURCES)
  if name in STREAMED:
    raise ValueError(f"dataset={name!r} is streamed (jaxsvd.data.streaming), not loaded into memory")
  if source == "tfds":
    ds = load_tfds(name, data_dir)
  elif name == "fashion_mnist":
    ds = load_fashion_mnist(data_dir)
  else:
    ds = load_cifar_local(name, data_dir or ".")
  check_dataset(ds, f"data_dir={data_dir}" if data_dir else f"data_source={source}")
  return ds


# ---- batches ----

# Fixed per-dataset (mean, std) in the [0, 1] scale: CIFAR-10's are the official SVD code's
# (``transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))``).
FIXED_NORMALIZATION = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))}
NORMALIZATIONS = ("auto", "fixed", "computed")


def dataset_normalization(name: str, images: np.ndarray, kind: str = "auto") -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) of dataset ``name``: its ``FIXED_NORMALIZATION`` ('fixed'), computed from ``images``
  ('computed', ``normalization``), or the fixed constants where there are any, else computed ('auto').

  Args:
    name: the dataset name.
    images: its uint8 training images (used by 'computed', and by 'auto' without constants).
    kind: 'auto', 'fixed' or 'computed'.

  Returns:
    (mean, std), float32 arrays with one entry per channel.

  Raises:
    ValueError: if ``kind`` is unknown, or 'fixed' is asked of a dataset without constants.
  """
  check_choice("normalization", kind, NORMALIZATIONS)
  if kind == "fixed" and name not in FIXED_NORMALIZATION:
    raise ValueError(f"normalization='fixed' has no constants for dataset={name!r} (known: "
                     f"{sorted(FIXED_NORMALIZATION)}); use 'computed'")
  if kind != "computed" and name in FIXED_NORMALIZATION:
    return tuple(np.asarray(v, np.float32) for v in FIXED_NORMALIZATION[name])
  return normalization(images)


def normalization(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation of uint8 images, in the [0, 1] scale.

  Args:
    images: a uint8 array whose last axis is the channels.

  Returns:
    (mean, std), float32 arrays with one entry per channel; std is at least 1e-3.
  """
  x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  return x.mean(0).astype(np.float32), np.maximum(x.std(0), 1e-3).astype(np.float32)


def num_train_batches(num_examples: int, batch_size: int, max_batches: int | None = None) -> int:
  """Full batches per epoch (the remainder is dropped), capped at ``max_batches``.

  Args:
    num_examples: the training set's size.
    batch_size: examples per batch.
    max_batches: the cap, or None for no cap.

  Returns:
    The number of batches.
  """
  full = num_examples // batch_size
  return full if max_batches is None else min(max_batches, full)


def train_batches(images, labels, batch_size: int, seed: int, epoch: int, mean, std, augment: bool,
                  max_batches: int | None = None, start: int = 0) -> Iterator[dict]:
  """Shuffled full batches (the remainder is dropped), deterministic in (seed, epoch); from batch ``start`` on, the
  same batches as the full epoch's (the skipped batches' augmentation draws are consumed, not computed).

  Args:
    images: (N, H, W, C) uint8 images.
    labels: (N,) labels.
    batch_size: examples per batch.
    seed: the seed (an int or a sequence of ints) of the shuffle and the augmentation.
    epoch: the epoch, mixed into the seed.
    mean: per-channel mean subtracted from the [0, 1]-scaled images (see ``normalization``).
    std: per-channel standard deviation they are divided by.
    augment: whether to apply ``image_ops.random_crop_flip``.
    max_batches: at most this many batches, or None for all.
    start: the first batch yielded (a resume inside the epoch).

  Yields:
    {'image': the normalized float32 batch, 'label': its labels}.
  """
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(len(images))
  for i in range(num_train_batches(len(images), batch_size, max_batches)):
    if i < start:
      if augment:
        crop_flip_draws(rng, batch_size)
      continue
    idx = np.sort(order[i * batch_size:(i + 1) * batch_size])
    x = images[idx]
    if augment:
      x = random_crop_flip(x, rng)
    yield {"image": (x.astype(np.float32) / 255.0 - mean) / std, "label": labels[idx]}


def eval_batches(images, labels, batch_size: int, mean, std) -> Iterator[dict]:
  """All examples; the last batch is padded to full size with mask = 0 on the padding.

  Args:
    images: (N, H, W, C) uint8 images, in order.
    labels: (N,) labels.
    batch_size: examples per batch.
    mean: per-channel mean subtracted from the [0, 1]-scaled images.
    std: per-channel standard deviation they are divided by.

  Yields:
    {'image': the normalized float32 batch, 'label': its labels, 'mask': float32, 1 for real examples}.
  """
  for start in range(0, len(images), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    real = len(x)
    if real < batch_size:
      x = np.concatenate([x, np.zeros((batch_size - real, *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros(batch_size - real, y.dtype)])
    mask = (np.arange(batch_size) < real).astype(np.float32)
    yield {"image": (x.astype(np.float32) / 255.0 - mean) / std, "label": y, "mask": mask}


__all__ = ["NUM_CLASSES", "STREAMED", "DATASETS", "SOURCES", "TFDS_MODULE", "FASHION_MNIST_DIRS", "FASHION_FILES",
           "Dataset", "read_idx", "check_data_dir", "load_fashion_mnist", "load_cifar_local", "load_tfds_module",
           "load_tfds", "load_dataset", "FIXED_NORMALIZATION", "NORMALIZATIONS", "dataset_normalization",
           "normalization", "num_train_batches", "train_batches", "eval_batches"]
