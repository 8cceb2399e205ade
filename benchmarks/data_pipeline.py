"""Input-pipeline throughput vs train-step consumption, side by side in one run.

  1. CIFAR-size (32×32): the in-memory NumPy pipeline (shuffle + pad-4 crop + flip + normalize, vectorized) vs
     the same augmentation as a grain stream (``jaxsvd.data.streaming``, per-image), vs the train step.
  2. ImageNet-size JPEGs (synthetic 500×375, quality 90, ~ImageNet's mean size): decode + random-resized-crop 224
     + flip per core (one thread, no grain), and through the grain stream (``--threads`` reader threads);
     vs the ResNet-50 SVD train step on this CPU (a ResNet-18 stand-in if ResNet-50 is not in the zoo), and the
     cores needed to feed published single-GPU ResNet-50 training rates (an estimate, see ``GPU_IMG_S``).

  python -m benchmarks.data_pipeline [--quick] [--model resnet20] [--jpegs 64] [--imagenet_batch 8] [--threads 2]
"""

from __future__ import annotations

import io
import os
import tempfile
import time

import grain
import numpy as np
from PIL import Image

from benchmarks import common
from jaxsvd import data
from jaxsvd.data import streaming
from jaxsvd.models import MODEL_NAMES, SVDSpec
from jaxsvd.training.losses import RegularizerConfig

# Published ResNet-50 v1.5 training throughput, one GPU (NVIDIA DeepLearningExamples, PyTorch, pytorch-21.03 NGC
# container, PyTorch/Classification/ConvNets/resnet50v1.5/README.md, "Training performance results").
GPU_IMG_S = {"V100 16GB FP32": 367, "V100 16GB AMP": 1200, "A100 80GB TF32": 938, "A100 80GB AMP": 2470}
SHARD = grain.sharding.ShardOptions(0, 1)


def _rate(n: int, seconds: float) -> float:
  return n / max(seconds, 1e-9)


def cifar_rates(batch_size: int, n: int, threads: int) -> dict:
  """img/s of the in-memory pipeline and of the grain stream (same augmentation) on n random 32×32 images."""
  images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  labels = np.zeros(n, np.int32)
  mean, std = data.normalization(images)
  start = time.perf_counter()
  count = sum(len(b["label"]) for b in data.train_batches(images, labels, batch_size, 0, 1, mean, std, True))
  in_memory = _rate(count, time.perf_counter() - start)
  stream = streaming.train_stream(streaming.ArraySource(images, labels), batch_size, 0,
                                  streaming.Preprocess("pad_crop_flip"), mean, std, SHARD, num_threads=threads)
  next(stream)  # thread start-up
  start = time.perf_counter()
  steps = max(n // batch_size - 1, 1)
  for _ in range(steps):
    next(stream)
  return {"in_memory": in_memory, "grain": _rate(steps * batch_size, time.perf_counter() - start)}


def write_jpegs(directory: str, n: int) -> int:
  """n synthetic 500×375 photos-like JPEGs (smooth color fields + fine noise) in 2 class folders; mean bytes."""
  rng = np.random.default_rng(0)
  sizes = []
  for i in range(n):
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
    pixels = np.clip(np.asarray(coarse, np.int16) + rng.integers(-12, 13, (375, 500, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    folder = os.path.join(directory, f"class_{i % 2}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
      f.write(buffer.getvalue())
    sizes.append(buffer.tell())
  return int(np.mean(sizes))


def jpeg_rates(n: int, batch_size: int, threads: int) -> dict:
  """img per CPU second of decode + random-resized-crop 224 + flip on one thread (a per-core rate), and img/s (wall)
  of the grain stream with ``threads``."""
  with tempfile.TemporaryDirectory() as tmp:
    mean_bytes = write_jpegs(tmp, n)
    source = streaming.ImageFolderSource(tmp)
    preprocess = streaming.Preprocess("random_resized_crop", 224)
    rng = np.random.default_rng(0)
    start = time.process_time()  # CPU seconds of this process (one thread here): a per-core rate, whatever the load
    for i in range(n):
      preprocess(source[i], rng)
    per_core = _rate(n, time.process_time() - start)
    stream = streaming.train_stream(source, batch_size, 0, preprocess, streaming.IMAGENET_MEAN,
                                    streaming.IMAGENET_STD, SHARD, num_threads=threads)
    next(stream)
    start = time.perf_counter()
    steps = max(n // batch_size, 1)
    for _ in range(steps):
      next(stream)
    threaded = _rate(steps * batch_size, time.perf_counter() - start)
  return {"per_core": per_core, "grain": threaded, "mean_kib": mean_bytes / 1024}


def train_rate(model: str, image: int, batch_size: int, repeats: int, classes: int = 10) -> float:
  state, _ = common.make_state(model, SVDSpec(), image=image)
  step = common.time_train_steps(state, common.batch(batch_size, image, classes), RegularizerConfig(1.0, 1e-3), repeats)
  return batch_size / step


def main():
  p = common.parser(__doc__, model="resnet20")
  p.add_argument("--jpegs", type=int, default=64)
  p.add_argument("--imagenet_batch", type=int, default=8, help="ResNet-50 step batch on this CPU (img/s is reported)")
  p.add_argument("--threads", type=int, default=2, help="grain reader threads (= cores used)")
  args = p.parse_args()
  batch_size, repeats = common.sizes(args)
  cifar = cifar_rates(batch_size, 1024 if args.quick else 10240, args.threads)
  print("cifar pipelines img/s", cifar, flush=True)
  cifar_train = train_rate(common.model_name(args), 32, batch_size, repeats)
  print("cifar train step img/s", cifar_train, flush=True)
  jpeg = jpeg_rates(8 if args.quick else args.jpegs, 4 if args.quick else args.imagenet_batch, args.threads)
  print("jpeg img/s", jpeg, flush=True)
  big = "resnet50" if "resnet50" in MODEL_NAMES else "resnet18"
  big = "resnet8" if args.quick else big
  big_image = 224 if big == "resnet50" else 32
  big_train = train_rate(big, big_image, 2 if args.quick else args.imagenet_batch, 1 if args.quick else 2)
  rows = [
      {"stage": "CIFAR in-memory NumPy (vectorized)", "img/s": f"{cifar['in_memory']:.0f}"},
      {"stage": f"CIFAR grain stream ({args.threads} threads)", "img/s": f"{cifar['grain']:.0f}"},
      {"stage": f"train step {common.model_name(args)} SVD, 32×32, batch {batch_size}", "img/s": f"{cifar_train:.0f}"},
      {"stage": f"JPEG ({jpeg['mean_kib']:.0f} KiB) decode + RRC 224 + flip, 1 core",
       "img/s": f"{jpeg['per_core']:.1f}"},
      {"stage": f"JPEG grain stream ({args.threads} threads) + normalize", "img/s": f"{jpeg['grain']:.1f}"},
      {"stage": f"train step {big} SVD, {big_image}×{big_image} (this CPU)", "img/s": f"{big_train:.2f}"},
  ]
  rows += [{"stage": f"published ResNet-50 training, 1× {gpu}: cores to feed it (estimate)",
            "img/s": f"{rate} -> {rate / jpeg['per_core']:.0f} cores"} for gpu, rate in GPU_IMG_S.items()]
  print(common.table(rows, ["stage", "img/s"]))
  if big != "resnet50":
    print(f"note: ResNet-50 not in the zoo here; {big} at {big_image}×{big_image} is a stand-in")
  print(f"KEY CIFAR in-memory / train step = {cifar['in_memory'] / cifar_train:.1f}x, in-memory / grain = "
        f"{cifar['in_memory'] / cifar['grain']:.1f}x; JPEG pipeline per core / "
        f"{big} step on this CPU = {jpeg['per_core'] / big_train:.1f}x")


if __name__ == "__main__":
  main()
