import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from jaxsvd import data
from tests import helpers


def _cifar_arrays(n, num_classes, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8), rng.integers(0, num_classes, n).astype(np.uint8)


def _binary_records(images, labels, cifar100):
  chw = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  label_cols = [labels // 5, labels] if cifar100 else [labels]  # (coarse, fine) for CIFAR-100
  return np.concatenate([np.stack(label_cols, 1).astype(np.uint8), chw], 1).tobytes()


def test_idx_roundtrip_and_fashion_loader(tmp_path):
  d = helpers.write_fashion_mnist(str(tmp_path), 20, 8)
  ds = data.load_fashion_mnist(d)
  assert ds.train_images.shape == (20, 28, 28, 1) and ds.test_labels.shape == (8,)
  imgs, labels = helpers.learnable_images(20, (28, 28), 10, 0)
  np.testing.assert_array_equal(ds.train_images[..., 0], imgs)
  np.testing.assert_array_equal(ds.train_labels, labels)


def test_real_fashion_mnist_if_installed():
  if not os.path.isdir(data.FASHION_MNIST_DIRS[0]):
    pytest.skip("dataset-fashion-mnist not installed (CI installs it)")
  ds = data.load_fashion_mnist()
  assert ds.train_images.shape == (60000, 28, 28, 1) and ds.test_images.shape == (10000, 28, 28, 1)
  assert set(np.unique(ds.train_labels)) == set(range(10))


@pytest.mark.parametrize("archive", [False, True])
def test_cifar10_binary(tmp_path, archive):
  train_parts = [_cifar_arrays(4, 10, i) for i in range(5)]
  test = _cifar_arrays(3, 10, 9)
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  for i, (x, y) in enumerate(train_parts):
    (folder / f"data_batch_{i + 1}.bin").write_bytes(_binary_records(x, y, False))
  (folder / "test_batch.bin").write_bytes(_binary_records(*test, False))
  root = tmp_path
  if archive:
    root = tmp_path / "arch"
    root.mkdir()
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
      tar.add(folder, arcname="cifar-10-batches-bin")
  ds = data.load_dataset("cifar10", str(root), "local")
  np.testing.assert_array_equal(ds.train_images, np.concatenate([p[0] for p in train_parts]))
  np.testing.assert_array_equal(ds.test_labels, test[1])
  assert ds.num_classes == 10


def test_cifar100_binary_uses_fine_labels(tmp_path):
  x, y = _cifar_arrays(6, 100, 0)
  folder = tmp_path / "cifar-100-binary"
  folder.mkdir()
  (folder / "train.bin").write_bytes(_binary_records(x, y, True))
  (folder / "test.bin").write_bytes(_binary_records(x[:2], y[:2], True))
  ds = data.load_dataset("cifar100", str(tmp_path))
  np.testing.assert_array_equal(ds.train_labels, y)
  np.testing.assert_array_equal(ds.train_images, x)


def test_cifar10_python_archive(tmp_path):
  x, y = _cifar_arrays(5, 10, 1)
  blob = pickle.dumps({b"data": x.transpose(0, 3, 1, 2).reshape(5, -1), b"labels": list(y)})
  with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
    for name in ["data_batch_1", "test_batch"]:
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  ds = data.load_dataset("cifar10", str(tmp_path))
  np.testing.assert_array_equal(ds.train_images, x)
  np.testing.assert_array_equal(ds.test_labels, y)


def test_missing_cifar_message_says_where(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"cifar-10-binary\.tar\.gz.*fashion_mnist works offline"):
    data.load_dataset("cifar10", str(tmp_path))


def test_missing_fashion_message(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "FASHION_MNIST_DIRS", ())
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    data.load_fashion_mnist(str(tmp_path))


def test_tfds_path_with_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    ds = data.load_dataset("cifar10", source="tfds")
  assert ds.train_images.shape == (6, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32 and ds.num_classes == 10


def test_unknown_dataset_and_source():
  with pytest.raises(ValueError, match="dataset"):
    data.load_dataset("mnist")
  with pytest.raises(ValueError, match="data_source"):
    data.load_dataset("cifar10", source="web")


def test_crop_flip_matches_loop_reference():
  images = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3)).astype(np.uint8)
  out = data.random_crop_flip(images, np.random.default_rng(5), pad=2)
  rng = np.random.default_rng(5)
  oy, ox = rng.integers(0, 5, size=(2, 6))
  flip = rng.random(6) < 0.5
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(6):
    crop = padded[i, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
    np.testing.assert_array_equal(out[i], crop[:, ::-1] if flip[i] else crop)


def test_batches_are_deterministic_and_eval_pads_with_mask():
  x = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)
  y = np.arange(10, dtype=np.int32)
  mean, std = np.zeros(1, np.float32), np.ones(1, np.float32)
  a = [b["label"] for b in data.train_batches(x, y, 4, 7, 1, mean, std, True)]
  b = [b["label"] for b in data.train_batches(x, y, 4, 7, 1, mean, std, True)]
  c = [b["label"] for b in data.train_batches(x, y, 4, 7, 2, mean, std, True)]
  assert len(a) == 2 and all((p == q).all() for p, q in zip(a, b)) and any((p != q).any() for p, q in zip(a, c))
  evals = list(data.eval_batches(x, y, 4, mean, std))
  assert [e["mask"].sum() for e in evals] == [4, 4, 2] and evals[-1]["image"].shape[0] == 4
