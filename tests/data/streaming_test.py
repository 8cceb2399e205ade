"""The grain streaming pipeline: exact mid-epoch resume, per-process shards, JPEG ImageFolder and tfds-mock
ImageNet batches, and the per-image augmentation against its definition."""

import json
import math
import os

import chex
import grain
import numpy as np
import pytest
from PIL import Image

from jaxsvd.data import image_ops, streaming, tfds_io

COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230)]  # one solid color per class


def _array_source(n=20, size=8):
  images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  return streaming.ArraySource(images, np.arange(n))  # label = index: order is readable from labels


def _stream(source, shard=(0, 1), batch=8, seed=3, preprocess=streaming.Preprocess("pad_crop_flip")):
  return streaming.train_stream(source, batch, seed, preprocess, 0.5, 0.25,
                                shard=grain.sharding.ShardOptions(*shard), num_threads=2, prefetch=16)


def _take(stream, n):
  return [next(stream) for _ in range(n)]


def test_mid_epoch_resume_is_exact():
  source = _array_source()  # 20 examples, batch 8: batch 4 starts mid-epoch 1
  uninterrupted = _take(_stream(source), 9)
  first = _stream(source)
  _take(first, 4)
  saved = json.dumps(first.get_state()).encode()  # as stored in the checkpoint
  resumed = _stream(source)
  resumed.set_state(json.loads(saved))
  for want, got in zip(uninterrupted[4:], _take(resumed, 5)):
    chex.assert_trees_all_equal(want, got)


def test_each_epoch_is_a_fresh_permutation():
  source = _array_source(n=16)
  labels = np.concatenate([b["label"] for b in _take(_stream(source), 4)])
  assert sorted(labels[:16]) == list(range(16)) and sorted(labels[16:]) == list(range(16))
  assert list(labels[:16]) != list(labels[16:])


def test_process_shards_split_each_global_batch():
  source = _array_source()
  single = _take(_stream(source), 3)
  shards = [_take(_stream(source, shard=(p, 2)), 3) for p in range(2)]
  for b in range(3):
    for p in range(2):  # process p holds rows p::2 of global batch b, augmentation included
      chex.assert_trees_all_equal(shards[p][b], {k: v[p::2] for k, v in single[b].items()})


def test_resume_on_another_process_count():
  source = _array_source()
  single = _stream(source)
  _take(single, 3)
  state = single.get_state()
  expected = _take(single, 2)
  for p in range(2):
    shard = _stream(source, shard=(p, 2))
    shard.set_state(state)
    for want, got in zip(expected, _take(shard, 2)):
      chex.assert_trees_all_equal(got, {k: v[p::2] for k, v in want.items()})


def test_state_of_another_seed_is_rejected():
  state = _stream(_array_source()).get_state()
  with pytest.raises(ValueError, match="seed"):
    _stream(_array_source(), seed=4).set_state(state)


def test_pad_crop_flip_is_pad_then_crop_then_flip():
  image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  rng = np.random.default_rng(5)
  out = image_ops.pad_crop_flip(image, rng)
  rng = np.random.default_rng(5)
  oy, ox = rng.integers(0, 9, size=2)
  expected = np.pad(image, ((4, 4), (4, 4), (0, 0)))[oy:oy + 8, ox:ox + 8]
  chex.assert_trees_all_equal(out, expected[:, ::-1] if rng.random() < 0.5 else expected)


def test_crop_box_follows_the_random_resized_crop_definition():
  rng = np.random.default_rng(0)
  areas, ratios = [], []
  for _ in range(300):
    top, left, h, w = image_ops.crop_box(200, 300, rng)
    assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
    areas.append(h * w / (200 * 300))
    ratios.append(w / h)
  assert min(areas) >= 0.08 * 0.9 and max(areas) <= 1.0
  assert min(ratios) >= 0.75 * 0.95 and max(ratios) <= 4 / 3 * 1.05
  # distribution: (s, log r) uniform, conditioned on the box fitting (vectorized re-derivation by rejection)
  draws = np.random.default_rng(1).uniform([0.08, math.log(3 / 4)], [1.0, math.log(4 / 3)], (20000, 2))
  w, h = np.sqrt(draws[:, 0] * 60000 * np.exp(draws[:, 1])), np.sqrt(draws[:, 0] * 60000 / np.exp(draws[:, 1]))
  fits = (w <= 300) & (h <= 200)
  assert abs(np.mean(areas) - draws[fits, 0].mean()) < 0.04
  # no try fits a 100×2 strip (w ≥ √(0.08·200·3/4) > 2.5): fallback = the central crop of aspect ratio 3/4
  assert image_ops.crop_box(100, 2, rng) == (48, 0, 3, 2)


def test_resize_center_crop_is_resize_256_center_224():
  image = np.zeros((300, 600, 3), np.uint8)
  image[:, 300:] = 255  # right half white
  out = image_ops.resize_center_crop(image, 224)
  assert out.shape == (224, 224, 3)
  # shorter side 300 → 256, longer 600 → 512; the central 224 columns straddle the middle at column 112
  chex.assert_trees_all_equal(out[:, :100].max(), np.uint8(0))
  chex.assert_trees_all_equal(out[:, 124:].min(), np.uint8(255))


def _write_image_folder(root, per_class=4):
  rng = np.random.default_rng(0)
  for label, color in enumerate(COLORS):
    os.makedirs(os.path.join(root, f"class_{label}"))
    for i in range(per_class):
      h, w = (int(x) for x in rng.integers(20, 48, size=2))
      Image.new("RGB", (w, h), color).save(os.path.join(root, f"class_{label}", f"{i}.jpg"), quality=95)
  return root


def _label_from_color(images):
  pixel = images.reshape(len(images), -1, 3).mean(1)
  return np.argmin([[np.abs(p - np.asarray(c) / 255.0).sum() for c in COLORS] for p in pixel], axis=1)


def test_image_folder_jpeg_train_and_eval_batches(tmp_path):
  source = streaming.ImageFolderSource(_write_image_folder(str(tmp_path / "train")))
  assert source.classes == ["class_0", "class_1", "class_2"] and len(source) == 12
  stream = streaming.train_stream(source, 6, 0, streaming.Preprocess("random_resized_crop", 16), 0.0, 1.0,
                                  shard=grain.sharding.ShardOptions(0, 1), num_threads=2)
  batch = next(stream)
  chex.assert_shape(batch["image"], (6, 16, 16, 3))
  chex.assert_type(batch["image"], np.float32)
  chex.assert_trees_all_equal(_label_from_color(batch["image"]), batch["label"])  # labels follow the folders
  batches = list(streaming.eval_stream(source, 5, streaming.Preprocess("center_crop", 16), 0.0, 1.0,
                                       shard=grain.sharding.ShardOptions(0, 1), num_threads=2))
  assert len(batches) == 3  # 12 examples in batches of 5: the last padded with 3 masked copies
  mask = np.concatenate([b["mask"] for b in batches])
  chex.assert_trees_all_equal(mask, (np.arange(15) < 12).astype(np.float32))
  labels = np.concatenate([b["label"] for b in batches])[:12]
  chex.assert_trees_all_equal(labels, np.repeat(np.arange(3, dtype=np.int32), 4))
  chex.assert_trees_all_equal(_label_from_color(np.concatenate([b["image"] for b in batches])[:12]), labels)


def test_image_folder_missing_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no"):
    streaming.ImageFolderSource(str(tmp_path))


def test_tfds_mock_imagenet_batches():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
    source = tfds_io.source("imagenet2012", "train")
    expected = sorted(int(source[i]["label"]) for i in range(len(source)))
    stream = streaming.train_stream(source, 5, 0, streaming.Preprocess("random_resized_crop", 24),
                                    streaming.IMAGENET_MEAN, streaming.IMAGENET_STD,
                                    shard=grain.sharding.ShardOptions(0, 1), num_threads=2)
    batches = _take(stream, 2)
    val = tfds_io.source("imagenet2012", "validation")
    evals = list(streaming.eval_stream(val, 4, streaming.Preprocess("center_crop", 24), streaming.IMAGENET_MEAN,
                                       streaming.IMAGENET_STD, shard=grain.sharding.ShardOptions(0, 1)))
  chex.assert_shape([b["image"] for b in batches], (5, 24, 24, 3))
  assert sorted(np.concatenate([b["label"] for b in batches]).tolist()) == expected  # one epoch = every example
  assert all(0 <= y < 1000 for y in expected)
  assert len(evals) == math.ceil(10 / 4) and sum(float(b["mask"].sum()) for b in evals) == 10
