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
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
      info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  ds = data.load_dataset("cifar10", str(tmp_path))
  np.testing.assert_array_equal(ds.train_images, np.concatenate([x] * 5))
  np.testing.assert_array_equal(ds.test_labels, y)


def test_missing_cifar_message_says_where(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"cifar-10-binary\.tar\.gz.*fashion_mnist needs no set-up"):
    data.load_dataset("cifar10", str(tmp_path))


def test_missing_fashion_message(tmp_path, monkeypatch):
  monkeypatch.setattr(data.datasets, "FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
  monkeypatch.setenv("JAXSVD_CACHE", str(tmp_path / "cache"))  # the mirror: conftest's closed port
  with pytest.raises(FileNotFoundError, match=r"data_dir is unset\) and the download failed .*apt-get install "
                                              r"dataset-fashion-mnist` or set --config\.data_dir"):
    data.load_fashion_mnist()


def test_named_data_dir_never_falls_back_to_the_default_location(tmp_path, monkeypatch):
  default = helpers.write_fashion_mnist(str(tmp_path / "default"), 20, 8)
  monkeypatch.setattr(data.datasets, "FASHION_MNIST_DIRS", (default,))
  assert len(data.load_dataset("fashion_mnist").train_images) == 20  # unset: the default location
  with pytest.raises(FileNotFoundError, match=r"data_dir=\S*missing does not exist"):
    data.load_dataset("fashion_mnist", str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="holds none of Fashion-MNIST's four files: put all of train-images"):
    data.load_dataset("fashion_mnist", str(tmp_path / "empty"))
  partial = helpers.write_fashion_mnist(str(tmp_path / "partial"), 20, 8)
  os.remove(os.path.join(partial, "t10k-labels-idx1-ubyte.gz"))
  with pytest.raises(FileNotFoundError, match=r"lacks Fashion-MNIST's t10k-labels-idx1-ubyte: put all"):
    data.load_dataset("fashion_mnist", partial)


def _rewrite(directory, stem, array):
  helpers.write_idx(os.path.join(directory, stem + ".gz"), array)


@pytest.mark.parametrize("case, message", [
    ("truncated", r"train-images-idx3-ubyte.gz cannot be read, truncated or corrupt \(EOFError"),
    ("not_gzip", r"t10k-labels-idx1-ubyte.gz cannot be read, truncated or corrupt \(BadGzipFile"),
    ("fewer_labels", r"holds 20 images but \S*train-labels-idx1-ubyte.gz 12 labels"),
    ("label_range", r"train labels must be in \[0, 10\), found 1 outside \(e.g. 10\)"),
    ("test_shape", r"test images are \(32, 32, 1\) but train images \(28, 28, 1\)"),
    ("labels_2d", r"expected \(N, H, W\) images and \(N,\) labels")])
def test_bad_fashion_files_are_one_line_errors(tmp_path, case, message):
  d = helpers.write_fashion_mnist(str(tmp_path), 20, 8)
  images, labels = helpers.learnable_images(20, (28, 28), 10, 0)
  if case == "truncated":
    path = os.path.join(d, "train-images-idx3-ubyte.gz")
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[:len(blob) // 2])
  elif case == "not_gzip":
    open(os.path.join(d, "t10k-labels-idx1-ubyte.gz"), "wb").write(b"plain bytes")
  elif case == "fewer_labels":
    _rewrite(d, "train-labels-idx1-ubyte", labels[:12])
  elif case == "label_range":
    labels[3] = 10
    _rewrite(d, "train-labels-idx1-ubyte", labels)
  elif case == "test_shape":
    _rewrite(d, "t10k-images-idx3-ubyte", helpers.learnable_images(8, (32, 32), 10, 1)[0])
  else:
    _rewrite(d, "train-labels-idx1-ubyte", labels.reshape(20, 1))
  with pytest.raises(ValueError, match=message) as err:
    data.load_dataset("fashion_mnist", d)
  assert "\n" not in str(err.value)


def test_cifar_missing_or_corrupt_batch_is_named(tmp_path):
  folder = tmp_path / "cifar-10-batches-bin"
  folder.mkdir()
  for i in (1, 2, 4, 5):
    (folder / f"data_batch_{i}.bin").write_bytes(_binary_records(*_cifar_arrays(2, 10, i), False))
  (folder / "test_batch.bin").write_bytes(b"\0" * 100)
  with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-bin lacks data_batch_3.bin"):
    data.load_dataset("cifar10", str(tmp_path))
  (folder / "data_batch_3.bin").write_bytes(_binary_records(*_cifar_arrays(2, 10, 3), False))
  with pytest.raises(ValueError, match=r"test_batch.bin is not a CIFAR batch file"):
    data.load_dataset("cifar10", str(tmp_path))
  (tmp_path / "arch").mkdir()
  (tmp_path / "arch" / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b truncated")
  with pytest.raises(ValueError, match=r"cifar-10-binary.tar.gz cannot be read, truncated or corrupt"):
    data.load_dataset("cifar10", str(tmp_path / "arch"))


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


class _CreatesAFile:
  """A pickle payload that would create a file when loaded by ``pickle.load``."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, "w"))


def test_crafted_cifar_pickle_is_refused_and_runs_nothing(tmp_path):
  target = tmp_path / "created_by_the_payload"
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  evil = pickle.dumps({b"data": _CreatesAFile(str(target)), b"labels": [0]})
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    (folder / name).write_bytes(evil)
  with pytest.raises(ValueError) as err:
    data.load_dataset("cifar10", str(tmp_path))
  message = str(err.value)
  assert "\n" not in message and "data_batch_1 is not a CIFAR batch file" in message
  assert "refused to load io.open" in message or "refused to load builtins.open" in message
  assert not target.exists()
  pickle.loads(evil)  # the same bytes through pickle.load do run the payload
  assert target.exists()


def test_safe_unpickler_reads_python2_style_cifar_pickles(tmp_path):
  x, y = _cifar_arrays(4, 10, 2)
  batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in y],
           b"data": x.transpose(0, 3, 1, 2).reshape(4, -1), b"filenames": [b"a.png"] * 4}
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    (folder / name).write_bytes(pickle.dumps(batch, protocol=2))  # protocol 2: numpy's _reconstruct, _codecs
  ds = data.load_dataset("cifar10", str(tmp_path))
  np.testing.assert_array_equal(ds.test_images, x)
  np.testing.assert_array_equal(ds.test_labels, y)
