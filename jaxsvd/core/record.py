"""The architecture record: everything a model's shapes depend on, as JSON-able data.

A checkpoint stores it beside the arrays (``jaxsvd.checkpoint``), so a pruned model restores in a fresh
process with nothing but the directory: read the record → ``build_model()`` → ``jax.eval_shape(init)`` →
abstract targets → arrays. Fields (format version 2):

  format_version   int: 2. Version 1 (jaxsvd 0.1.0 before the redesign) kept these fields inside the run
                   metadata; ``from_json`` converts such a dict, any other version is a one-line error.
  model            str: a zoo model name (``jaxsvd.models.MODEL_NAMES``), e.g. 'resnet20'.
  num_classes      int: outputs of the classifier.
  input_shape      [int]: one example's shape without the batch dimension, e.g. [32, 32, 3].
  svd              null (dense model) or the SVD spec without its ranks: {decomposition: 'channel' |
                   'spatial', mode: 'reconstruct' | 'factored' | 'auto', default_rank: int | null,
                   dense_first: bool, dense_last: bool, sigma: 'signed' | 'abs', init: 'svd_of_he' | 'official',
                   dense_strided: bool}; sigma, init and dense_strided are absent in older records and read as
                   'signed', 'svd_of_he' and false (what those runs did).
  ranks            {SVD layer path: int}: the ranks now (read back from params by ``structure.ranks``).
  original_ranks   {SVD layer path: int}: the ranks at initialization (``pruning.rank.Floors.min_decay``).
  widths           null or {conv path: int}: output channels of the model's channel groups
                   (``model.channel_groups()``: every VGG conv, each ResNet block's conv1) where they differ from
                   the standard model: set by network slimming and by pruning from scratch.
  pruned_channels  null or {norm layer path: [int]}: the channels network slimming removed physically (indices in
                   the layer before that slimming; ``widths`` already holds the new sizes).
  masked_channels  null or {norm layer path: [int]}: channels held at exactly zero in full-width params (format-1
                   slimming; ``pruning.slimming.masks_from_channels`` rebuilds the masks for resuming).
  masks            null or {leaf path: int}: leaves holding unstructured masks (magnitude or dynamic pruning, the
                   experiments' ``masks`` section) and the entries each keeps; the pruned entries are exact zeros of
                   the (full-shape) params and the bool masks themselves are the optimizer state's
                   (``pruning.masks.keep_pruned``), so a resume keeps them; absent in older records.
  options          null or {option: value}: CIFAR ResNet architecture options (``models.CIFAR_RESNET_OPTIONS``:
                   shortcut 'A' | 'B', block 'basic' | 'bottleneck', bottleneck_relu); absent in older records.
  compute_dtype    str: 'float32' | 'bfloat16', the dtype the zoo model's convs and matmuls run in (params, BN,
                   sums and logits stay float32; ``models.common.conv``); absent in older records: 'float32'. Like
                   ``svd.mode`` it changes how the model computes, not its shapes: ``build_model`` rebuilds the model
                   that was trained; a resumed run follows its config; ``replace(compute_dtype=...)`` evaluates
                   in the other precision. User models carry their own layers' dtype.
  user             null (a zoo model), or the record kind of a user's own model, whose module the caller passes at
                   restore (``checkpoint.restore(path, model=MyNet())``); ``model`` then holds its class name and
                   ``num_classes`` 0. Keys: framework ('linen'; 'nnx'), module (the class's qualified name, checked
                   at restore), svdify (null: dense; else the ``svdify`` settings {decomposition, mode, skip,
                   skip_pattern}), call_kwargs ({name: JSON value}: the static arguments init/apply were called
                   with, e.g. {"train": false}), input_dtype (e.g. 'float32', 'int32'), stack_shapes ({SVD layer
                   path: [int]}: the leading stack axes of stacked layers, ``nn.scan``/``nn.vmap``/groups).
  input_contract   null, or how raw inputs become the model's (``jaxsvd.core.contract.InputContract.to_json``:
                   shape, uint8 pixels, scale, per-channel mean/std, resize, class names, dataset): set by the
                   experiments from the training data; absent in older records (then inputs must come normalized).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxsvd.core import registry
from jaxsvd.core.contract import InputContract
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.structure import validate_ranks
from jaxsvd.core.svd import COMPUTE_DTYPES
from jaxsvd.core.validate import check_choice

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, FORMAT_VERSION)  # 1: converted on read (``from_json``)


class FormatError(ValueError):
  """An architecture record of an unknown format version, or with missing/ill-typed fields."""


@dataclasses.dataclass(frozen=True)
class Architecture:
  """A model's architecture as data (see the module doc for every field).

  Frozen; construction raises ValueError unless every value of ``ranks`` and ``original_ranks`` is an int ≥ 1.
  """
  model: str
  num_classes: int
  input_shape: tuple[int, ...]
  svd: SVDSpec | None = None
  ranks: Mapping[str, int] = dataclasses.field(default_factory=dict)
  original_ranks: Mapping[str, int] = dataclasses.field(default_factory=dict)
  widths: Mapping[str, int] | None = None
  pruned_channels: Mapping[str, list[int]] | None = None
  masked_channels: Mapping[str, list[int]] | None = None
  masks: Mapping[str, int] | None = None
  options: Mapping[str, object] | None = None
  user: Mapping[str, Any] | None = None
  compute_dtype: str = "float32"
  input_contract: Mapping[str, Any] | None = None

  def __post_init__(self):
    check_choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
    if self.input_contract is not None:
      self.contract()  # validates
    validate_ranks(self.ranks, "ranks")
    validate_ranks(self.original_ranks, "original_ranks")

  def replace(self, **changes) -> Architecture:
    """A copy with some fields changed (``dataclasses.replace``).

    Args:
      **changes: field name → new value.

    Returns:
      The new ``Architecture`` (validated like any other).
    """
    return dataclasses.replace(self, **changes)

  def build_model(self, bn_axis_name: str | None = None, gated: bool = False) -> Any:
    """The linen model at this architecture (``bn_axis_name``: synchronized BN for pmap training).

    Args:
      bn_axis_name: the pmap axis name over which BatchNorm statistics are synchronized (None: not).
      gated: add pruning-from-scratch gates (ResNets only).

    Returns:
      ``models.build_model(model, num_classes, svd, ranks=ranks (if svd), widths=widths, ..., compute_dtype)``.

    Raises:
      ValueError: if the record describes a user model (use ``build_user_model``).
    """
    if self.user is not None:
      raise ValueError(f"the record describes a user model ({self.model}); build it with build_user_model(module)")
    build_zoo_model = registry.lookup("zoo")
    return build_zoo_model(self.model, self.num_classes, self.svd, ranks=dict(self.ranks) if self.svd else None,
                           bn_axis_name=bn_axis_name, widths=self.widths, gated=gated, options=self.options,
                           compute_dtype=self.compute_dtype)

  def build_user_model(self, module: Any) -> Any:
    """The user's ``module`` at this record's architecture (the builder registered as 'user/<framework>').

    Args:
      module: the user's model (e.g. a linen ``nn.Module`` instance), of the class named in ``user['module']``.

    Returns:
      What the framework's builder returns (linen, ``jaxsvd.linen.svdifylib.from_record``:
      ``svdify(module, ranks, **user['svdify'])``).

    Raises:
      ValueError: if the record is not a user model's, or ``module`` is of another class.
    """
    if self.user is None:
      raise ValueError(f"the record describes the zoo model {self.model!r}, not a user model")
    name = type(module).__qualname__
    if name != self.user["module"]:
      raise ValueError(f"record user.module={self.user['module']!r} but the module passed is a {name}")
    framework = self.user["framework"]
    if f"user/{framework}" not in registry.names():
      known = tuple(n.removeprefix("user/") for n in registry.names() if n.startswith("user/"))
      raise ValueError(f"record user.framework={framework!r} is not one of {known}")
    return registry.lookup(f"user/{framework}")(self, module)

  def contract(self) -> InputContract | None:
    """The record's input contract (None when the record has none).

    Returns:
      The ``InputContract`` of ``input_contract``, or None.

    Raises:
      ValueError: if ``input_contract`` is ill-formed (one line).
    """
    return None if self.input_contract is None else InputContract.from_json(self.input_contract)

  def dense(self) -> Architecture:
    """The same architecture with every SVD layer dense (the target of ``jaxsvd.deploy.merged_params``)."""
    return self.replace(svd=None, ranks={}, original_ranks={})

  def to_json(self) -> dict:
    """The record as a JSON-able dict (with ``format_version``)."""
    svd = None if self.svd is None else {k: v for k, v in self.svd.to_dict().items() if k != "ranks"}
    return {"format_version": FORMAT_VERSION, "model": self.model, "num_classes": int(self.num_classes),
            "input_shape": [int(d) for d in self.input_shape], "svd": svd, "ranks": dict(self.ranks),
            "original_ranks": dict(self.original_ranks),
            "widths": None if self.widths is None else {k: int(v) for k, v in self.widths.items()},
            "pruned_channels": _channels_json(self.pruned_channels),
            "masked_channels": _channels_json(self.masked_channels),
            "masks": None if self.masks is None else {k: int(v) for k, v in self.masks.items()},
            "options": None if self.options is None else dict(self.options), "user": _user_json(self.user),
            "compute_dtype": self.compute_dtype,
            "input_contract": None if self.input_contract is None else dict(self.input_contract)}

  @classmethod
  def from_json(cls, d: Mapping[str, Any], where: str = "architecture record") -> Architecture:
    """The record from ``to_json`` output, or from a format-1 checkpoint's metadata dict.

    Args:
      d: the JSON object.
      where: what ``d`` was read from, named in errors.

    Returns:
      The ``Architecture``.

    Raises:
      FormatError: if ``d`` is not a mapping, its format_version is not 1 or 2, or (after any conversion from
        format 1) a field is missing or of the wrong type. Invalid values (e.g. a rank < 1) raise ValueError.
    """
    if not isinstance(d, Mapping):
      raise FormatError(f"{where}: expected a JSON object, got {type(d).__name__}")
    version = d.get("format_version")
    if version not in READABLE_VERSIONS:
      raise FormatError(f"{where} has format_version={version!r}; this jaxsvd reads versions {READABLE_VERSIONS}")
    try:
      d = _from_version_1(d) if version == 1 else d
      svd = None if d["svd"] is None else SVDSpec.from_dict({**d["svd"], "ranks": {}})
      return cls(model=str(d["model"]), num_classes=int(d["num_classes"]),
                 input_shape=tuple(int(x) for x in d["input_shape"]), svd=svd, ranks=dict(d["ranks"]),
                 original_ranks=dict(d["original_ranks"]), widths=d.get("widths"),
                 pruned_channels=d.get("pruned_channels"), masked_channels=d.get("masked_channels"),
                 masks=d.get("masks"),
                 options=d.get("options"), user=d.get("user"), compute_dtype=d.get("compute_dtype", "float32"),
                 input_contract=d.get("input_contract"))
    except (KeyError, TypeError, AttributeError) as err:
      raise FormatError(f"{where} (format_version={version}) is missing or mistypes field {err}") from None


def _from_version_1(meta: Mapping[str, Any]) -> dict:
  """A format-1 metadata dict (record fields mixed with run metadata) as a version-2 record dict."""
  model = meta["model"]
  svd, inner = model.get("svd"), model.get("inner_widths")
  return {"format_version": FORMAT_VERSION, "model": model["name"], "num_classes": model["num_classes"],
          "input_shape": meta["input_shape"],
          "svd": None if svd is None else {k: v for k, v in svd.items() if k != "ranks"},
          "ranks": meta.get("ranks") or {}, "original_ranks": meta.get("original_ranks") or meta.get("ranks") or {},
          "widths": None if not inner else {f"{block}/conv1": width for block, width in inner.items()},
          "pruned_channels": None, "masked_channels": meta.get("pruned_channels")}


def _user_json(user: Mapping[str, Any] | None) -> dict | None:
  if user is None:
    return None
  shapes = {k: [int(d) for d in v] for k, v in user.get("stack_shapes", {}).items()}
  return {**user, "stack_shapes": shapes}


def _channels_json(channels: Mapping[str, list[int]] | None) -> dict | None:
  return None if channels is None else {k: [int(i) for i in v] for k, v in channels.items()}


__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "FormatError", "Architecture"]
