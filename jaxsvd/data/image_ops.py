"""Per-image decode and augmentation for the streaming pipeline (NumPy + Pillow, one image at a time).

  decode               JPEG/PNG bytes or an (H, W[, C]) uint8 array → (H, W, C) uint8, RGB if ``channels`` = 3.
  mode                 an encoded image's Pillow mode ('L', 'RGB', 'RGBA', 'P', ...), read from its header.
  convert_channels     a decoded (H, W, 1|3) uint8 image as grayscale or RGB (Pillow's conversion, ITU-R 601-2 luma).
  aspect_crop          the largest central crop with a given aspect ratio (a real photo to a model's H:W).
  crop_resize          ``aspect_crop`` to (height, width)'s aspect, then resized bilinearly to (height, width).
  random_resized_crop  torchvision's ``RandomResizedCrop`` (ImageNet training, He et al. / the official recipe):
                       area fraction s ~ U(scale), log aspect ratio r ~ U(log ratio); crop w = √(s·A·r),
                       h = √(s·A/r) at a uniform offset, up to 10 tries, else the central crop of the largest
                       in-range aspect ratio; resized bilinearly to size × size.
  resize_center_crop   evaluation: shorter side resized to round(size / crop_fraction), central size × size crop.
  pad_crop_flip        CIFAR: zero-pad ``pad`` pixels, uniform size-preserving crop (``random_crop_flip`` per image).
  flip                 horizontal flip with probability 1/2.
  random_crop_flip     the in-memory pipeline's CIFAR augmentation, vectorized over a batch; ``crop_flip_draws`` are
                       its random draws (a resume inside an epoch consumes them for the batches it skips).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def decode(image, channels: int = 3) -> np.ndarray:
  """An encoded or decoded image as a (H, W, channels) uint8 array.

  Args:
    image: encoded bytes (any format Pillow reads), or a uint8 array (H, W) or (H, W, C).
    channels: 3 (converted to RGB) or 1 (converted to grayscale).

  Returns:
    The (H, W, channels) uint8 array.

  Raises:
    ValueError: if ``channels`` is not 1 or 3, or a decoded array's channel count differs from ``channels``.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if isinstance(image, (bytes, bytearray, np.bytes_)):
    with Image.open(io.BytesIO(bytes(image))) as img:
      array = np.asarray(img.convert("RGB" if channels == 3 else "L"))
  else:
    array = np.asarray(image, np.uint8)
  array = array[..., None] if array.ndim == 2 else array
  if array.shape[-1] != channels:
    raise ValueError(f"image has {array.shape[-1]} channels, expected {channels}")
  return array


def mode(data: bytes) -> str:
  """The Pillow mode of encoded image bytes ('L' grayscale, 'RGB', 'RGBA', 'P' palette, ...), from the header.

  Args:
    data: encoded bytes (any format Pillow reads).

  Returns:
    The mode.
  """
  with Image.open(io.BytesIO(bytes(data))) as img:
    return img.mode


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """A decoded (H, W, 1|3) uint8 image with ``channels`` channels, converted as Pillow converts ('L': ITU-R 601-2
  luma L = R·299/1000 + G·587/1000 + B·114/1000; 'RGB' from 'L': the gray value in each channel).

  Args:
    image: the (H, W, 1) or (H, W, 3) uint8 image.
    channels: 1 or 3.

  Returns:
    The (H, W, channels) uint8 image (``image`` itself when it has ``channels`` already).

  Raises:
    ValueError: if ``channels`` is not 1 or 3, or ``image`` is not (H, W, 1|3).
  """
  if channels not in (1, 3) or image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f"expected an (H, W, 1|3) image and channels 1 or 3, got shape {image.shape} and {channels}")
  if image.shape[-1] == channels:
    return image
  out = np.asarray(Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).convert("L" if channels == 1
                                                                                             else "RGB"))
  return out[..., None] if out.ndim == 2 else out


def aspect_crop(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
  """The largest central (top, left, h, w) box of a height × width image whose aspect is target_height:target_width.

  Args:
    height: the image's height.
    width: the image's width.
    target_height: the aspect's height.
    target_width: the aspect's width.

  Returns:
    (top, left, h, w): the whole image when its aspect is the target's, else its central part cut on one axis.
  """
  if width * target_height > height * target_width:  # wider than the target: cut the width
    h, w = height, max(1, round(height * target_width / target_height))
  else:
    h, w = max(1, round(width * target_height / target_width)), width
  return (height - h) // 2, (width - w) // 2, h, w


def crop_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """The central crop of ``image`` with the aspect height:width (``aspect_crop``), resized bilinearly to that size.

  Args:
    image: the (H, W, C) uint8 image, C = 1 or 3.
    height: the output's height.
    width: the output's width.

  Returns:
    The (height, width, C) uint8 image.
  """
  top, left, h, w = aspect_crop(image.shape[0], image.shape[1], height, width)
  return _resize(image[top:top + h, left:left + w], height, width)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(img.resize((width, height), Image.BILINEAR))
  return out[..., None] if out.ndim == 2 else out


def crop_box(height: int, width: int, rng: np.random.Generator, scale=(0.08, 1.0),
             ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """torchvision ``RandomResizedCrop.get_params``: a random (top, left, h, w) box (see the module doc).

  Args:
    height: the image's height H.
    width: the image's width W.
    rng: the NumPy generator the area fraction, aspect ratio and offsets are drawn from.
    scale: (low, high) range of the crop's area as a fraction of H·W.
    ratio: (low, high) range of the crop's aspect ratio w / h (sampled uniformly in log space).

  Returns:
    (top, left, h, w) ints with the box inside the image; after 10 failed tries, the largest central box whose
    aspect ratio is the image's clamped to the ``ratio`` range.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < ratio[0]:
    w, h = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    h, w = height, int(round(height * ratio[1]))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> np.ndarray:
  """A random crop (``crop_box``) of a (H, W, C) uint8 image, resized bilinearly to (size, size, C).

  Args:
    image: the (H, W, C) uint8 image, C = 1 or 3.
    rng: the NumPy generator for ``crop_box``.
    size: the output's height and width.
    scale: ``crop_box``'s range of the crop's area fraction.
    ratio: ``crop_box``'s range of the crop's aspect ratio.

  Returns:
    The (size, size, C) uint8 crop.
  """
  top, left, h, w = crop_box(image.shape[0], image.shape[1], rng, scale, ratio)
  return _resize(image[top:top + h, left:left + w], size, size)


def resize_center_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
  """Shorter side resized to round(size / crop_fraction) (256 for 224), then the central (size, size) crop.

  Args:
    image: the (H, W, C) uint8 image, C = 1 or 3.
    size: the output's height and width.
    crop_fraction: the crop's side as a fraction of the resized shorter side (the longer side is resized to keep
      the aspect ratio, and to at least ``size``).

  Returns:
    The (size, size, C) uint8 crop.
  """
  height, width = image.shape[:2]
  short = int(round(size / crop_fraction))
  if height <= width:
    new_h, new_w = short, max(size, int(round(width * short / height)))
  else:
    new_h, new_w = max(size, int(round(height * short / width))), short
  resized = _resize(image, new_h, new_w)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return resized[top:top + size, left:left + size]


def flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """The image mirrored left-right with probability 1/2.

  Args:
    image: an (H, W, ...) array.
    rng: the NumPy generator that decides (one ``rng.random()`` draw).

  Returns:
    ``image[:, ::-1]`` (a view, not a copy) or ``image`` itself.
  """
  return image[:, ::-1] if rng.random() < 0.5 else image


def pad_crop_flip(image: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """Zero-pad ``pad`` pixels per side, crop back to (H, W) at a uniform offset in [0, 2·pad]², flip w.p. 1/2.

  Args:
    image: the (H, W, C) image.
    rng: the NumPy generator the offsets and the flip are drawn from.
    pad: the zero padding added on each side of the height and width.

  Returns:
    An (H, W, C) array of ``image``'s dtype.
  """
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  oy, ox = rng.integers(0, 2 * pad + 1, size=2)
  return flip(padded[oy:oy + h, ox:ox + w], rng)


def crop_flip_draws(rng: np.random.Generator, batch: int, pad: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The random draws of one ``random_crop_flip`` batch, in the order it makes them (a skipped batch consumes these).

  Args:
    rng: the generator.
    batch: the batch size.
    pad: the crop padding; offsets are uniform in [0, 2·pad].

  Returns:
    (row offsets, column offsets, flip flags), each of length ``batch``.
  """
  oy, ox = rng.integers(0, 2 * pad + 1, size=(2, batch))
  return oy, ox, rng.random(batch) < 0.5


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """Pad-``pad`` random crop + horizontal flip, vectorized over the batch.

  Args:
    images: a (B, H, W, C) batch.
    rng: the generator drawing each image's crop offsets and flip (``crop_flip_draws``).
    pad: zeros added on each side before the crop; offsets are uniform in [0, 2·pad].

  Returns:
    The augmented batch, of the same shape; each image is flipped with probability 1/2.
  """
  b, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oy, ox, flip = crop_flip_draws(rng, b, pad)
  rows = (oy[:, None] + np.arange(h))[:, :, None]
  cols = ox[:, None] + np.arange(w)
  cols = np.where(flip[:, None], cols[:, ::-1], cols)[:, None, :]
  return padded[np.arange(b)[:, None, None], rows, cols]


__all__ = ["decode", "mode", "convert_channels", "aspect_crop", "crop_resize", "crop_box", "random_resized_crop",
           "resize_center_crop", "flip", "pad_crop_flip", "crop_flip_draws", "random_crop_flip"]
