"""Byte-level language modelling (``experiments.tasks``): a decoder-only transformer written as a flax user writes it
(``experiments.models.byte_lm``), trained in SVD form through ``jaxsvd.linen.svdify``, next-byte cross-entropy,
perplexity and bits per byte.

The data: the text files of ``text_dir`` (None: this Python's standard library, which every machine has, without its
site-packages) whose names
end with ``text_suffixes``, split by file (``test_fraction``, fixed by ``seed``) and packed into windows of
``lm.context`` + 1 bytes (``jaxsvd.data.text``). Files that are not text (a NUL byte, invalid UTF-8) or empty are
skipped and counted in the start-up log. A batch holds the steps' keys: 'image' the input bytes (B, context) and
'label' the next bytes (B, context). Training windows are shuffled per epoch by the run's rng (the order is a
function of (seed, epoch), so a resume inside an epoch is exact); ``test_subset`` N evaluates N windows spread evenly
over the test files (None / -1: all).

Metrics: ``test_loss`` the mean cross-entropy per predicted byte (nats), ``test_perplexity`` exp of it,
``test_bits_per_byte`` it / ln 2; the best checkpoint is kept by the lowest bits per byte. MACs in the metrics rows
and the summary are per token (per byte).

Config fields (``experiments/configs/stdlib_lm.py``): ``text_dir``, ``text_suffixes``, ``test_fraction``,
``test_subset``, and ``lm`` {d_model, heads, layers, d_ff, context, tied}. A bad field or folder is one line naming
it, before anything compiles.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.models import byte_lm
from experiments.tasks import Task
from jaxsvd.core.record import Architecture
from jaxsvd.core.spec import SVDSpec
from jaxsvd.core.validate import check_min_int
from jaxsvd.data import text
from jaxsvd.training.parallel import DataParallel

ALL = -1  # test_subset: every test window


@dataclasses.dataclass(frozen=True)
class Windows:
  """The windows ``text.pack`` would make of ``tokens`` (``context`` + 1 bytes every ``context`` bytes), cut only
  when asked for (the stdlib's 28 MB of text stay bytes, not a 4× larger int32 copy)."""
  tokens: np.ndarray  # uint8
  context: int
  rows: np.ndarray | None = None  # which windows (None: all)

  def __len__(self) -> int:
    return (len(self.tokens) - 1) // self.context if self.rows is None else len(self.rows)

  def take(self, index) -> np.ndarray:
    """Windows ``index`` (an int array) as an (n, context + 1) int32 array."""
    index = np.asarray(index) if self.rows is None else self.rows[index]
    return self.tokens[index[:, None] * self.context + np.arange(self.context + 1)].astype(np.int32)

  def subset(self, n: int) -> Windows:
    """``n`` windows spread evenly over these."""
    return dataclasses.replace(self, rows=np.linspace(0, len(self) - 1, n).round().astype(int))


@dataclasses.dataclass
class TextInputs:
  """Byte windows of the corpus in host memory; every process builds the same global batches."""
  c: Any
  corpus: text.Corpus
  train: Windows
  test: Windows
  root: str
  local = False

  @property
  def input_shape(self) -> tuple[int]:
    return (self.train.context,)

  def num_train_batches(self) -> int:
    full = len(self.train) // self.c.batch_size
    return full if self.c.max_steps_per_epoch is None else min(full, self.c.max_steps_per_epoch)

  def train_batches(self, seed, epoch: int, start: int = 0):
    del epoch  # ``seed`` already folds it in (``run.epoch.epoch_batches``)
    order = np.random.default_rng(seed).permutation(len(self.train))
    b = self.c.batch_size
    for i in range(start, self.num_train_batches()):
      rows = self.train.take(order[i * b:(i + 1) * b])
      yield {"image": rows[:, :-1], "label": rows[:, 1:]}

  def eval_batches(self):
    b = self.c.eval_batch_size
    for i in range(0, len(self.test), b):
      rows = self.test.take(np.arange(i, min(i + b, len(self.test))))
      mask = np.zeros(b, np.float32)
      mask[:len(rows)] = 1.0
      rows = np.concatenate([rows, np.zeros((b - len(rows), rows.shape[1]), np.int32)])
      yield {"image": rows[:, :-1], "label": rows[:, 1:], "mask": mask}

  def get_state(self) -> None:
    """None: the order is a function of (seed, epoch)."""

  def set_state(self, state) -> None:
    del state

  def describe(self) -> str:
    """One line for the start-up log: where from, files and bytes per split, what was skipped, windows."""
    return (f"text from {self.root} ({'/'.join(self.c.text_suffixes) or 'every file'}): {self.corpus.describe()}; "
            f"{len(self.train):,} train / {len(self.test):,} test windows of {self.input_shape[0]} bytes")

  def contract(self) -> None:
    """None: a byte model's inputs are the bytes themselves (no normalization to record)."""


def text_root(c) -> str:
  """The folder the config reads: ``text_dir``, or this Python's standard library when it is None."""
  return text.stdlib_dir() if c.text_dir is None else c.text_dir


def sizes(c) -> dict:
  """The model's sizes from the config's ``lm`` section (``byte_lm.SIZES``; the vocabulary is the 256 bytes)."""
  return {**{k: c.lm[k] for k in ("d_model", "heads", "layers", "d_ff", "context")}, "vocab": text.VOCAB,
          "tied": bool(c.lm.tied)}


def validate(c) -> None:
  """One-line errors for the task's config fields: the text folder and split, the model sizes, the SVD spec's
  fields a user model cannot take.

  Args:
    c: the experiment config.

  Returns:
    None.

  Raises:
    ValueError: one line naming the first bad field.
  """
  if c.text_dir is not None and (not isinstance(c.text_dir, str) or not c.text_dir):
    raise ValueError(f"text_dir must name a folder of text files, or be None for the Python standard library, "
                     f"got {c.text_dir!r}")
  if c.text_dir is not None and not os.path.isdir(c.text_dir):
    raise ValueError(f"text_dir={c.text_dir!r} does not exist or is not a folder")
  if isinstance(c.text_suffixes, str) or not all(isinstance(s, str) for s in c.text_suffixes):
    raise ValueError(f"text_suffixes must be a tuple of file-name endings, e.g. ('.py',), got {c.text_suffixes!r}")
  if isinstance(c.test_fraction, bool) or not isinstance(c.test_fraction, (int, float)) or not (
      0.0 < c.test_fraction < 1.0):
    raise ValueError(f"test_fraction must be in (0, 1), got {c.test_fraction!r}")
  if c.test_subset is not None and c.test_subset != ALL:
    check_min_int("test_subset", c.test_subset, 1)
  for field in ("d_model", "heads", "layers", "d_ff", "context"):
    check_min_int(f"lm.{field}", c.lm[field], 1)
  if not isinstance(c.lm.tied, bool):
    raise ValueError(f"lm.tied must be True or False, got {c.lm.tied!r}")
  if c.lm.d_model % c.lm.heads:
    raise ValueError(f"lm.d_model={c.lm.d_model} is not divisible by lm.heads={c.lm.heads}")
  if c.svd.enabled and c.svd.default_rank is not None:
    raise ValueError(f"svd.default_rank={c.svd.default_rank}: the language model's layers start at full rank "
                     "(leave it None)")
  if c.svd.enabled and c.svd.decomposition != "channel":
    raise ValueError(f"svd.decomposition={c.svd.decomposition!r}: the language model has no convs, use 'channel'")


def _windows(tokens: np.ndarray, context: int, split: str, c) -> Windows:
  windows = Windows(tokens, context)
  if len(windows) < 1:
    raise ValueError(f"text_dir={text_root(c)!r}: the {split} files' {len(tokens)} bytes do not fill one window of "
                     f"lm.context + 1 = {context + 1} bytes")
  return windows


def inputs(c) -> TextInputs:
  """The corpus of ``text_dir``, split by file and packed into windows of ``lm.context`` + 1 bytes.

  Args:
    c: the experiment config.

  Returns:
    The ``TextInputs``.

  Raises:
    ValueError: one line naming ``text_dir`` (missing, empty, no usable text file, too little text),
      ``batch_size`` (more than the training windows) or ``test_subset`` (more than the test windows).
  """
  root = text_root(c)
  try:
    corpus = text.load_corpus(root, tuple(c.text_suffixes), c.test_fraction, c.seed,
                              text.STDLIB_EXCLUDE if c.text_dir is None else ())
  except ValueError as err:
    raise ValueError(f"text_dir: {err}") from None
  train = _windows(corpus.train, c.lm.context, "train", c)
  test = _windows(corpus.test, c.lm.context, "test", c)
  if c.batch_size > len(train):
    raise ValueError(f"batch_size={c.batch_size} is larger than the {len(train)} training windows of "
                     f"text_dir={root!r}")
  if c.test_subset not in (None, ALL):
    if c.test_subset > len(test):
      raise ValueError(f"test_subset={c.test_subset} is more than the {len(test)} test windows of text_dir={root!r}")
    test = test.subset(c.test_subset)
  return TextInputs(c, corpus, train, test, root)


def architecture(c, svd: SVDSpec | None, input_shape, contract=None) -> Architecture:
  """The record of the config's byte transformer (``byte_lm.record``; ranks empty).

  Args:
    c: the experiment config (its ``lm`` section).
    svd: the run's SVD spec, or None for a dense model.
    input_shape: (context,).
    contract: unused (byte inputs have none).

  Returns:
    The ``Architecture``.
  """
  del input_shape, contract
  return byte_lm.record(sizes(c), svd)


def parallel(c) -> DataParallel:
  """The next-byte cross-entropy train and eval steps (``jaxsvd.training``: the loss of a sequence model's logits is
  its mean over positions) under ``c.parallel`` on ``c.num_devices`` devices.

  Args:
    c: the experiment config.

  Returns:
    The ``DataParallel``.
  """
  return DataParallel(c.parallel, c.num_devices)


def evaluate(sums: dict) -> dict:
  """The test metrics of the eval steps' sums (over every predicted byte of the real windows).

  Args:
    sums: {'loss_sum', 'correct', 'count'} (host values).

  Returns:
    {'test_loss' (mean CE per byte, nats), 'test_perplexity' (exp of it), 'test_bits_per_byte' (it / ln 2),
    'test_accuracy' (next-byte top-1)}.
  """
  loss = sums["loss_sum"] / sums["count"]
  return {"test_loss": loss, "test_perplexity": math.exp(loss), "test_bits_per_byte": loss / math.log(2),
          "test_accuracy": sums["correct"] / sums["count"]}


def summary(history: Sequence[dict]) -> dict:
  """The summary's task fields: the last row's perplexity, bits per byte and loss.

  Args:
    history: the run's metrics rows.

  Returns:
    {'test_perplexity', 'test_bits_per_byte', 'test_loss'}.
  """
  return {k: history[-1][k] for k in ("test_perplexity", "test_bits_per_byte", "test_loss")}


def summary_rows(summary: dict) -> list[tuple[str, str]]:
  """The summary table's task rows.

  Args:
    summary: the end-of-run summary.

  Returns:
    [('test perplexity', ...), ('test bits per byte', ...)].
  """
  return [("test perplexity", f"{summary['test_perplexity']:.3f}"),
          ("test bits per byte", f"{summary['test_bits_per_byte']:.4f}")]


def epoch_text(row: dict) -> str:
  """An epoch's losses for its log line.

  Args:
    row: the epoch's metrics row.

  Returns:
    'train loss (CE + λ·reg) L, CE C | test ppl P, bits/byte B' (the CE alone when no regularizer was on).
  """
  loss, ce = row["train_loss"], row.get("train_ce", row["train_loss"])
  same = abs(loss - ce) <= 1e-6 * max(abs(ce), 1.0)
  train = f"train CE {ce:.4f}" if same else f"train loss (CE + λ·reg) {loss:.4f}, CE {ce:.4f}"
  return f"{train} | test ppl {row['test_perplexity']:.3f}, bits/byte {row['test_bits_per_byte']:.4f}"


def units_per_example(input_shape) -> int:
  """The tokens of one window (MACs are reported per token)."""
  return int(input_shape[0])


TASK = Task("language_model", validate, inputs, architecture, parallel, evaluate, summary, summary_rows, epoch_text,
            best_metric="test_bits_per_byte", progress_metrics=("loss", "ce"), examples="sequences",
            higher_is_better=False, model=byte_lm.build, units_per_example=units_per_example,
            unit="token", next_step="a continuation: python -m experiments.predict --workdir={workdir} --prompt='def '")

__all__ = ["ALL", "Windows", "TextInputs", "text_root", "sizes", "validate", "inputs", "architecture", "parallel", "evaluate",
           "summary", "summary_rows", "epoch_text", "units_per_example", "TASK"]
