"""The language-model task end to end (``python -m experiments.lm_svd``): a tiny byte transformer on a small text
folder, SVD + online pruning + a budget final prune + fine-tune; exact resume after a mid-epoch SIGTERM; restore and
continue a prompt in a fresh process; perplexity and bits per byte against NumPy; the one-line errors."""

import json
import math
import os
import signal
import subprocess
import sys
import sysconfig

import chex
import numpy as np
import pytest

from experiments import compress, lm_svd, predict
from experiments.configs import stdlib_lm
from experiments.models import byte_lm
from experiments.run import epoch, preemption
from experiments.run.plan import make_plan
from experiments.tasks import language_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = ("abc.py", "bisect.py", "colorsys.py", "copy.py", "fnmatch.py", "keyword.py", "heapq.py", "glob.py")
TINY = {"lm.d_model": 32, "lm.heads": 2, "lm.layers": 1, "lm.d_ff": 64, "lm.context": 32, "batch_size": 8,
        "eval_batch_size": 16, "test_subset": 48, "num_epochs": 3, "max_steps_per_epoch": 6, "finetune_epochs": 1,
        "test_fraction": 0.25, "pruning.start": 1, "pruning.energy": 0.1, "final_prune.strategy": "budget",
        "final_prune.macs_reduction": 1.3, "plots": False, "tensorboard": False, "progress_bar": False}


def write_texts(root) -> str:
  """A folder of a few stdlib modules and one binary file (skipped)."""
  os.makedirs(root, exist_ok=True)
  for name in FILES:
    with open(os.path.join(sysconfig.get_paths()["stdlib"], name), "rb") as f, open(os.path.join(root, name), "wb") as g:
      g.write(f.read())
  with open(os.path.join(root, "blob.py"), "wb") as f:
    f.write(b"\x00\x01\x02binary")
  return str(root)


def flags(text_dir, **overrides) -> list[str]:
  return [f"--config.text_dir={text_dir}"] + [f"--config.{k}={v}" for k, v in {**TINY, **overrides}.items()]


def config(folder, **overrides):
  c = stdlib_lm.get_config()
  c.text_dir = folder
  for key, value in {**TINY, **overrides}.items():
    *parents, leaf = key.split(".")
    target = c
    for p in parents:
      target = target[p]
    target[leaf] = value
  return c


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
  return write_texts(tmp_path_factory.mktemp("texts"))


@pytest.fixture(scope="module")
def reference(texts, tmp_path_factory):
  """The uninterrupted run, through the command's main."""
  workdir = str(tmp_path_factory.mktemp("lm") / "run")
  lm_svd.main(["prog", "--config=stdlib_lm", f"--workdir={workdir}", *flags(texts)])
  return workdir


def _params(workdir):
  return byte_lm.restore(workdir)[1]["params"]


def test_a_tiny_run_trains_prunes_fine_tunes_and_reports_perplexity(reference):
  with open(os.path.join(reference, "summary.json")) as f:
    summary = json.load(f)
  for key in ("test_perplexity", "test_bits_per_byte", "params_before", "params_after", "macs_before", "macs_after",
              "rank_before", "rank_after"):
    assert key in summary, key
  assert summary["rank_after"] < summary["rank_before"] and summary["macs_after"] < summary["macs_before"]
  assert summary["test_bits_per_byte"] < 7.5  # uniform bytes: 8
  assert math.isclose(summary["test_perplexity"], 2 ** summary["test_bits_per_byte"], rel_tol=1e-9)
  assert summary["macs_per"] == "token" and summary["macs_before"] == 16384  # per token: 2·32·256 (attend) + 4·32·32 (attention) + 2·32·64 (MLP)
  architecture, _ = byte_lm.restore(reference)
  assert architecture.options["d_model"] == 32 and architecture.user["module"] == "ByteLM"
  assert os.path.isdir(os.path.join(reference, "final_params", "merged"))


def test_sigterm_inside_an_epoch_then_the_rerun_ends_as_the_uninterrupted_run(reference, texts, tmp_path,
                                                                              monkeypatch):
  add, calls = epoch.Progress.add, []

  def add_then_signal(self, metrics):
    add(self, metrics)
    calls.append(1)
    if len(calls) == 8:  # epoch 2, batch 2
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(epoch.Progress, "add", add_then_signal)
  workdir = str(tmp_path / "run")
  argv = ["prog", "--config=stdlib_lm", f"--workdir={workdir}", *flags(texts)]
  with pytest.raises(SystemExit) as stopped:
    lm_svd.main(argv)
  assert stopped.value.code == preemption.EXIT_CODE
  monkeypatch.setattr(epoch.Progress, "add", add)
  lm_svd.main(argv)
  chex.assert_trees_all_equal(_params(workdir), _params(reference))
  with open(os.path.join(workdir, "summary.json")) as f, open(os.path.join(reference, "summary.json")) as g:
    ours, theirs = json.load(f), json.load(g)
  assert {k: v for k, v in ours.items() if not k.startswith("test_")} == {
      k: v for k, v in theirs.items() if not k.startswith("test_")}
  assert math.isclose(ours["test_perplexity"], theirs["test_perplexity"], rel_tol=1e-5)


def test_perplexity_and_bits_per_byte_match_numpy(reference, texts):
  c = config(texts)
  architecture, variables = byte_lm.restore(reference)
  data = language_model.inputs(c)
  total, count = 0.0, 0
  for batch in data.eval_batches():
    logits = np.asarray(byte_lm.build(architecture).apply(variables, batch["image"]), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, batch["label"][..., None], -1)[..., 0]
    total += float((ce * batch["mask"][:, None]).sum())
    count += int(batch["mask"].sum()) * batch["label"].shape[1]
  with open(os.path.join(reference, "summary.json")) as f:
    summary = json.load(f)
  assert count == 48 * 32
  assert math.isclose(summary["test_perplexity"], math.exp(total / count), rel_tol=1e-4)
  assert math.isclose(summary["test_bits_per_byte"], total / count / math.log(2), rel_tol=1e-4)


def test_a_fresh_process_restores_the_run_and_continues_a_prompt(reference):
  def run(*args):
    return subprocess.run([sys.executable, "-m", "experiments.predict", f"--workdir={reference}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          check=False)
  greedy = run("--prompt=def ", "--max_bytes=20")
  assert greedy.returncode == 0, greedy.stderr[-2000:]
  assert greedy.stdout.startswith("def ") and len(greedy.stdout.rstrip("\n").encode()) >= 4
  assert run("--prompt=def ", "--max_bytes=20").stdout == greedy.stdout  # greedy is deterministic
  too_long = run("--prompt=" + "x" * 33)
  assert too_long.returncode != 0
  assert too_long.stderr.strip().splitlines()[-1] == ("error: --prompt is 33 bytes, more than the model's context of "
                                                      "32 bytes")


def test_sampling_follows_the_seed(reference):
  architecture, variables = byte_lm.restore(reference)
  ids = byte_lm.encode_prompt("import ", 32)
  a, b = (byte_lm.generate(architecture, variables, ids, 12, 1.0, seed) for seed in (1, 1))
  assert a == b and len(a) == 12


@pytest.mark.parametrize("prompt, message", [
    ("", r"^--prompt is empty"),
    ("a\0b", r"^--prompt holds a NUL byte"),
    ("\udcff", r"^--prompt is not valid UTF-8 text"),
])
def test_bad_prompts_are_one_line(prompt, message):
  with pytest.raises(ValueError, match=message):
    byte_lm.encode_prompt(prompt, 32)


def test_bad_flags_of_a_continuation_are_one_line(reference):
  with pytest.raises(ValueError, match=r"^--temperature must be 0"):
    predict.continue_prompt(reference, "def ", 5, -1.0)
  with pytest.raises(ValueError, match=r"^--max_bytes"):
    predict.continue_prompt(reference, "def ", 0)


def test_bad_text_folders_and_fields_are_one_line_before_any_compile(tmp_path, texts):
  empty = tmp_path / "empty"
  empty.mkdir()
  binary = tmp_path / "binary"
  binary.mkdir()
  (binary / "a.py").write_bytes(b"\x00\x01")
  (binary / "b.py").write_bytes(b"\xff\xfe")
  with pytest.raises(ValueError, match=r"^text_dir='\S+/missing' does not exist or is not a folder$"):
    make_plan(config(str(tmp_path / "missing")))
  with pytest.raises(ValueError, match=r"^text_dir: text folder \S+ holds no file ending with \.py$"):
    language_model.inputs(config(str(empty)))
  with pytest.raises(ValueError, match=r"^text_dir: text folder \S+: none of its 2 files is usable text"):
    language_model.inputs(config(str(binary)))
  for field, value, message in (("lm.heads", 3, r"lm\.d_model=32 is not divisible by lm\.heads=3"),
                                ("test_fraction", 1.5, r"test_fraction must be in \(0, 1\)"),
                                ("text_dir", "", r"text_dir must name a folder"),
                                ("svd.default_rank", 4, r"svd\.default_rank=4")):
    with pytest.raises(ValueError, match=message):
      make_plan(config(texts, **{field: value}))
  with pytest.raises(ValueError, match=r"^batch_size=100000 is larger than the \d+ training windows"):
    language_model.inputs(config(texts, batch_size=100000))
  data = language_model.inputs(config(texts))
  assert "skipped: 1 binary (NUL byte)" in data.describe()


def test_the_lm_loss_is_per_byte_and_the_best_checkpoint_is_the_lowest():
  task = language_model.TASK
  assert not task.higher_is_better and task.best([3.0, 2.0, 2.5]) == 2.0
  sums = {"loss_sum": 2.0 * 100, "correct": 10.0, "count": 100.0}
  metrics = task.evaluate(sums)
  assert metrics["test_perplexity"] == pytest.approx(math.exp(2.0))
  assert metrics["test_bits_per_byte"] == pytest.approx(2.0 / math.log(2))


def test_compress_an_lm_run_to_a_macs_budget_and_fine_tune(reference, texts, tmp_path):
  workdir = str(tmp_path / "compressed")
  compress.main(["prog", "--config=stdlib_lm_compress", f"--source={reference}", f"--workdir={workdir}",
                 *flags(texts, **{"macs_reduction": 1.3, "calibration_examples": 16, "finetune_epochs": 1,
                                  "max_steps_per_epoch": 3})])
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  with open(os.path.join(reference, "summary.json")) as f:
    source = json.load(f)
  assert summary["method"] == "whitened" and summary["source_test_perplexity"] == source["test_perplexity"]
  for key in ("test_perplexity", "test_bits_per_byte"):
    assert math.isfinite(summary[key]) and math.isfinite(summary[f"{key}_before_finetune"])
  assert summary["macs_after"] <= source["macs_before"] / 1.3
  assert byte_lm.restore(workdir)[0].user["module"] == "ByteLM"


def test_an_lm_run_compressed_with_an_image_config_is_one_line(reference, tmp_path):
  with pytest.raises(SystemExit, match=r"^error: source: .* is a language_model run, the config's task is "
                                       r"image_classification"):
    compress.main(["prog", f"--source={reference}", f"--workdir={tmp_path}"])
