"""The input contract: what a model's inputs are as a user has them, and how they become what it was trained on.

An image model is trained on ``(x / scale − mean) / std`` of uint8 NHWC images. The contract records that mapping
with the input shape and the class names, so a checkpoint and a deploy artifact can take images as they are stored
on disk (uint8) and give the training accuracy. It is part of the architecture record (``record.Architecture``'s
``input_contract``) and of a deploy artifact's ``meta.json`` (``input``), as JSON:

  layout       'NHWC'
  shape        [H, W, C]: one image
  dtype        'uint8': the raw pixels the contract takes (float input must already be normalized)
  scale        255.0: raw pixels are divided by it first
  mean, std    [C floats]: per-channel, in the scaled [0, 1] range (``jaxsvd.data.dataset_normalization``)
  resize       'none' (images must have ``shape``) | 'center_crop' (shorter side to H / crop_fraction, central crop)
  crop_fraction  float (0.875 for ImageNet evaluation), used by 'center_crop'
  class_names  [str] or null
  dataset      str: where the numbers come from (e.g. 'fashion_mnist')
The deploy runner (``jaxsvd/deploy/runner.py``: jax, numpy, flatbuffers) repeats ``normalize`` on its own; a test checks
that both agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxsvd.core.validate import check_choice

RESIZES = ("none", "center_crop")
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


@dataclasses.dataclass(frozen=True)
class InputContract:
  """How raw uint8 images of ``shape`` become model inputs: ``(x / scale − mean) / std`` per channel."""
  shape: tuple[int, ...]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  scale: float = 255.0
  dtype: str = "uint8"
  layout: str = "NHWC"
  resize: str = "none"
  crop_fraction: float = 0.875
  class_names: tuple[str, ...] | None = None
  dataset: str | None = None

  def __post_init__(self):
    check_choice("input_contract.resize", self.resize, RESIZES)
    channels = self.shape[-1]
    if len(self.mean) != channels or len(self.std) != channels:
      raise ValueError(f"input_contract: mean and std need {channels} entries (one per channel), got "
                       f"{len(self.mean)} and {len(self.std)}")

  def normalize(self, images: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Model inputs from images, after ``check``.

    Args:
      images: uint8 images (batch, H, W, C), or (batch, H, W) when C = 1; with ``normalized``, float inputs as the
        model takes them.
      normalized: whether ``images`` are already normalized.

    Returns:
      float32 (batch, H, W, C) model inputs: ``(images / scale − mean) / std`` unless ``normalized``.
    """
    x = self.check(images, normalized)
    if normalized:
      return x.astype(np.float32)
    mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
    return (x.astype(np.float32) / np.float32(self.scale) - mean) / std

  def check(self, images: Any, normalized: bool = False) -> np.ndarray:
    """``images`` as an array of the expected shape (a missing channel axis of a 1-channel contract is added).

    Args:
      images: the input batch.
      normalized: whether float, already-normalized input is expected instead of raw uint8.

    Returns:
      The (batch, H, W, C) array.

    Raises:
      ValueError: one line naming the expected shape and dtype.
    """
    x = np.asarray(images)
    expected = f"{'float' if normalized else self.dtype} images of shape (batch, {', '.join(map(str, self.shape))})"
    if x.ndim == len(self.shape) and self.shape[-1] == 1:
      x = x[..., None]
    if x.ndim != len(self.shape) + 1 or tuple(x.shape[1:]) != tuple(self.shape):
      raise ValueError(f"input: expected {expected}, got shape {x.shape}")
    if normalized and not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f"input: normalized=True expects {expected}, got {x.dtype}")
    if not normalized and x.dtype != np.dtype(self.dtype):
      hint = " (already-normalized float input: pass normalized=True)" if np.issubdtype(x.dtype, np.floating) else ""
      raise ValueError(f"input: expected {expected} as stored on disk, got {x.dtype}{hint}")
    return x

  def class_name(self, index: int) -> str:
    """The name of class ``index`` (its number as a string when the contract has no names).

    Args:
      index: a class index.

    Returns:
      The name.
    """
    return self.class_names[index] if self.class_names and 0 <= index < len(self.class_names) else str(index)

  def to_json(self) -> dict:
    """The contract as a JSON-able dict (the module doc lists the keys).

    Returns:
      The dict.
    """
    d = dataclasses.asdict(self)
    return {**d, "shape": list(self.shape), "mean": list(self.mean), "std": list(self.std),
            "class_names": None if self.class_names is None else list(self.class_names)}

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> InputContract:
    """The contract ``to_json`` wrote.

    Args:
      d: the dict.

    Returns:
      The ``InputContract``.

    Raises:
      ValueError: if a key is missing or invalid (one line).
    """
    try:
      names = d.get("class_names")
      return cls(tuple(d["shape"]), tuple(map(float, d["mean"])), tuple(map(float, d["std"])), float(d["scale"]),
                 d["dtype"], d["layout"], d.get("resize", "none"), float(d.get("crop_fraction", 0.875)),
                 None if names is None else tuple(names), d.get("dataset"))
    except (KeyError, TypeError) as err:
      raise ValueError(f"input_contract: missing or ill-typed field {err}") from None


def image_contract(dataset: str, shape: Sequence[int], mean, std, class_names: Sequence[str] | None = None,
                   resize: str = "none") -> InputContract:
  """The contract of a model trained on uint8 images of ``dataset`` normalized by (``mean``, ``std``).

  Args:
    dataset: the dataset's name (``CLASS_NAMES`` gives known class names).
    shape: (H, W, C) of one image.
    mean: per-channel mean in the [0, 1] range.
    std: per-channel standard deviation in the [0, 1] range.
    class_names: the class names (default: ``CLASS_NAMES.get(dataset)``).
    resize: 'none' or 'center_crop' (ImageNet-style evaluation crop).

  Returns:
    The ``InputContract``.
  """
  names = class_names if class_names is not None else CLASS_NAMES.get(dataset)
  return InputContract(tuple(int(v) for v in shape), tuple(float(v) for v in np.ravel(mean)),
                       tuple(float(v) for v in np.ravel(std)), resize=resize,
                       class_names=None if names is None else tuple(names), dataset=dataset)


__all__ = ["RESIZES", "CLASS_NAMES", "InputContract", "image_contract"]
