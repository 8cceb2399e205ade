"""Bad input through the experiment CLIs: exactly one `error:` line naming the field or file, no traceback, nothing
compiled (``jax_log_compiles`` logs every trace and compile; none may appear).

Most cases call the CLI's ``main(argv)`` in-process (a jax import per subprocess costs seconds); a few run the real
program in a subprocess with ``JAX_LOG_COMPILES=1``.
"""

import logging
import os
import re
import shutil
import subprocess
import sys

import jax
import pytest

from experiments import cifar_svd, pruning_from_scratch
from jaxsvd.data import FASHION_FILES
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "--config=experiments/configs/fashion_mnist.py"
COMPILE_LOGS = ("Compiling", "Finished tracing", "Finished XLA compilation")


@pytest.fixture(scope="module")
def good_data(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")))


@pytest.fixture
def log_compiles(caplog):
  jax.config.update("jax_log_compiles", True)
  caplog.set_level(logging.WARNING)
  yield caplog
  jax.config.update("jax_log_compiles", False)


def run_main(main, argv, capsys, caplog) -> str:
  """Runs ``main(argv)``; returns its one error line after checking no traceback, no other error line, no compile."""
  with pytest.raises(SystemExit) as exit_info:
    main(["prog", *argv])
  message = str(exit_info.value.code)
  out, err = capsys.readouterr()
  assert message.startswith("error: ") and "\n" not in message, message
  assert "Traceback" not in out + err and "error:" not in out + err
  compiles = [r.getMessage() for r in caplog.records if r.getMessage().startswith(COMPILE_LOGS)]
  assert not compiles, compiles[:3]
  return message


def _idx(directory, key):
  return os.path.join(directory, FASHION_FILES[key] + ".gz")


def _truncate(d):
  blob = open(_idx(d, "train_images"), "rb").read()
  open(_idx(d, "train_images"), "wb").write(blob[:len(blob) // 2])


MUTATIONS = {  # name: how a copy of the good data directory is broken
    "missing": lambda d: shutil.rmtree(d),
    "empty": lambda d: [os.remove(_idx(d, k)) for k in FASHION_FILES],
    "partial": lambda d: os.remove(_idx(d, "test_labels")),
    "truncated_gzip": _truncate,
    "not_gzip": lambda d: open(_idx(d, "train_labels"), "wb").write(b"not gzip"),
    "test_shape": lambda d: helpers.write_idx(_idx(d, "test_images"), helpers.learnable_images(64, (32, 32), 10, 1)[0]),
    "fewer_labels": lambda d: helpers.write_idx(_idx(d, "train_labels"), helpers.learnable_images(100, (28, 28), 10, 0)[1]),
    "label_range": lambda d: helpers.write_idx(_idx(d, "test_labels"), helpers.learnable_images(64, (28, 28), 10, 1)[1] + 5),
}

DATA_CASES = [
    ("missing", r"data_dir=\S+ does not exist"),
    ("empty", r"data_dir=\S+ holds none of Fashion-MNIST's four files: put all of train-images-idx3-ubyte"),
    ("partial", r"data_dir=\S+ lacks Fashion-MNIST's t10k-labels-idx1-ubyte: put all of"),
    ("truncated_gzip", r"train-images-idx3-ubyte.gz cannot be read, truncated or corrupt \(EOFError"),
    ("not_gzip", r"train-labels-idx1-ubyte.gz cannot be read, truncated or corrupt \(BadGzipFile"),
    ("test_shape", r"test images are \(32, 32, 1\) but train images \(28, 28, 1\)"),
    ("fewer_labels", r"train-images-idx3-ubyte.gz holds 256 images but \S+train-labels-idx1-ubyte.gz 100 labels"),
    ("label_range", r"test labels must be in \[0, 10\), found \d+ outside"),
]


@pytest.mark.parametrize("mutation, pattern", DATA_CASES)
def test_bad_data_dir_is_one_line_error(good_data, tmp_path, capsys, log_compiles, mutation, pattern):
  broken = str(tmp_path / "data")
  shutil.copytree(good_data, broken)
  MUTATIONS[mutation](broken)
  message = run_main(cifar_svd.main, [CONFIG, f"--workdir={tmp_path / 'run'}", *helpers.cli_flags(broken)], capsys,
                     log_compiles)
  assert re.search(pattern, message), message
  assert "/usr/share/datasets" not in message
  assert not os.path.exists(tmp_path / "run")  # a run that fails before training leaves no workdir behind


CONFIG_CASES = [  # (overrides, the start of the error after "error: ")
    (["--config.model=resnet21"], "model='resnet21' is not one of"),
    (["--config.pruning.strategy=magnitude"], "pruning.strategy='magnitude' is not one of"),
    (["--config.final_prune.strategy=foo"], "final_prune.strategy='foo' is not one of"),
    (["--config.finetune_epochs=9"], "finetune_epochs=9 leaves no training epochs"),
    (["--config.final_prune.energy=1.5"], "final_prune.energy must be in (0.0, 1.0)"),
    (["--config.pruning.stop=-1"], "pruning.stop must be an int >= 1, got -1"),
    (["--config.optimizer.learning_rate=0"], "optimizer.learning_rate must be a finite number > 0, got 0.0"),
    (["--config.optimizer.learning_rate=inf"], "optimizer.learning_rate must be a finite number > 0, got inf"),
    (["--config.optimizer.warmup_epochs=-1"], "optimizer.warmup_epochs must be a finite number >= 0, got -1"),
    (["--config.optimizer.momentum=1.5"], "optimizer.momentum must be in [0.0, 1.0), got 1.5"),
    (["--config.optimizer.milestones=(0.5,1.5)"], "optimizer.milestones must be in (0.0, 1.0], got 1.5"),
    (["--config.reg.sparsity=nan"], "reg.sparsity must be a finite number >= 0, got nan"),
    (["--config.seed=-1"], "seed must be an int >= 0, got -1"),
    (["--config.train_subset=-5"], "train_subset must be an int >= 1, or -1 / None for the whole split, got -5"),
    (["--config.train_subset=0"], "train_subset must be an int >= 1, or -1 / None for the whole split, got 0"),
    (["--config.test_subset=-2"], "test_subset must be an int >= 1"),
    (["--config.train_subset=1000"], "train_subset=1000 is more than the 256 examples of data_dir="),
    (["--config.batch_size=1000"], "batch_size=1000 is larger than the 256 training examples used"),
    (["--config.train_subset=64", "--config.batch_size=100"], "batch_size=100 is larger than the 64 training"),
    (["--config.checkpoint.max_to_keep=0"], "checkpoint.max_to_keep must be an int >= 1, got 0"),
    (["--config.checkpoint.every_steps=-1"], "checkpoint.every_steps must be an int >= 0, got -1"),
    (["--config.checkpoint.stop_signal=SIGKILL"], "checkpoint.stop_signal: 'SIGKILL' is not one of"),
    (["--config.checkpoint.stop_sync_every=0"], "checkpoint.stop_sync_every must be an int >= 1, got 0"),
    (["--config.slimming.enabled=True", "--config.slimming.prune_epoch=1", "--config.slimming.channel_multiple=0"],
     "slimming.channel_multiple must be an int >= 1, got 0"),
    (["--config.data_dir="], "data_dir is empty"),
    (["--config.parallel=pmap", "--config.num_devices=8"], "num_devices=8 but parallel='pmap' uses 4 of the 4"),
    (["--config.parallel=pmap", "--config.batch_size=30"], "batch_size=30 is not divisible by the 4 devices"),
    (["--config.foo=1"], "--config.foo: the config has no field 'foo'"),
    (["--config.pruning.foo=1"], "--config.pruning.foo: the config has no field 'foo'"),
    (["--config.batch_size=abc"], "flag --config.batch_size=abc: invalid literal for int()"),
    (["--config=experiments/configs/missing.py"], "--config=experiments/configs/missing.py: cannot load the config"),
    (["unexpected"], "unexpected arguments: ['unexpected']"),
]


@pytest.mark.parametrize("overrides, expected", CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_is_one_line_error_naming_the_field(good_data, tmp_path, capsys, log_compiles, overrides, expected):
  workdir = tmp_path / "run"
  message = run_main(cifar_svd.main, [CONFIG, f"--workdir={workdir}", *helpers.cli_flags(good_data), *overrides],
                     capsys, log_compiles)
  assert message.startswith(f"error: {expected}"), message
  assert not os.path.exists(workdir)


def _workdir(kind, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  if kind == "file":
    return str(blocker), "is a file, not a directory"
  if kind == "under_file":
    return str(blocker / "run"), "cannot be created (Not a directory)"
  if os.geteuid() != 0:  # read-only: root writes through permissions, so then use /proc (never writable)
    (tmp_path / "ro").mkdir(mode=0o555)
    return str(tmp_path / "ro"), "is not writable (Permission denied)"
  return "/proc/self", "is not writable"


@pytest.mark.parametrize("kind", ["file", "under_file", "read_only"])
def test_unwritable_workdir_is_one_line_error(good_data, tmp_path, capsys, log_compiles, kind):
  workdir, expected = _workdir(kind, tmp_path)
  message = run_main(cifar_svd.main, [CONFIG, f"--workdir={workdir}", *helpers.cli_flags(good_data)], capsys,
                     log_compiles)
  assert message.startswith(f"error: --workdir={workdir} {expected}"), message


def test_tfds_source_without_tensorflow_datasets(good_data, tmp_path, capsys, log_compiles, monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if it (or a part it imports) were missing
  monkeypatch.delitem(sys.modules, "jaxsvd.data.tfds_io", raising=False)  # imported anew: finds no tfds
  message = run_main(cifar_svd.main, [CONFIG, f"--workdir={tmp_path}", *helpers.cli_flags(good_data),
                                      "--config.data_source=tfds", "--config.dataset=cifar10"], capsys, log_compiles)
  assert message.startswith("error: data_source='tfds' cannot load cifar10 (ModuleNotFoundError"), message
  assert "data_source='local'" in message


FROM_SCRATCH = "--config=experiments/configs/fashion_mnist_from_scratch.py"


@pytest.mark.parametrize("overrides, expected", [
    (["--config.from_scratch.budget=0"], "from_scratch.budget must be in (0.0, 1.0], got 0"),
    (["--config.from_scratch.learning_rate=0"], "from_scratch.learning_rate must be a finite number > 0"),
    (["--config.from_scratch.channel_multiple=0"], "from_scratch.channel_multiple must be an int >= 1, got 0"),
    (["--config.data_dir=/nonexistent/fm"], "data_dir=/nonexistent/fm does not exist"),
    (["--config.batch_size=1000"], "batch_size=1000 is larger than the 256 training examples used")])
def test_pruning_from_scratch_bad_input_before_the_search(good_data, tmp_path, capsys, log_compiles, overrides,
                                                          expected):
  message = run_main(pruning_from_scratch.main, [FROM_SCRATCH, f"--workdir={tmp_path}",
                                                 *helpers.cli_flags(good_data), *overrides], capsys, log_compiles)
  assert message.startswith(f"error: {expected}"), message
  assert not os.path.exists(tmp_path / "widths.json")


def test_resume_on_data_of_another_shape(good_data, tmp_path, capsys, log_compiles):
  """A workdir holding a checkpoint of a 28×28×1 model, resumed on 32×32×1 data: one line before flax's shape error."""
  from experiments.run import loop
  from jaxsvd import checkpoint
  workdir = str(tmp_path / "run")
  tiny = {"num_epochs": 2, "finetune_epochs": 0, "pruning.enabled": False, "final_prune.enabled": False,
          "svd.enabled": False}
  c = helpers.tiny_config(good_data, **tiny)
  s = loop.setup(c, workdir)
  r = loop.init_run(s)  # the epoch-0 checkpoint of a fresh run (no training needed to have a record to resume)
  checkpoint.save(s.mngr, s.par.host_state(r.state), r.rng, r.architecture, loop.run_info(c, r))
  s.mngr.wait_until_finished()
  s.mngr.close()
  log_compiles.clear()
  other = str(tmp_path / "other")
  shutil.copytree(good_data, other)
  for split, n in (("train", 256), ("test", 64)):
    helpers.write_idx(_idx(other, f"{split}_images"), helpers.learnable_images(n, (32, 32), 10, 0)[0])
  message = run_main(cifar_svd.main, [CONFIG, f"--workdir={workdir}", *helpers.cli_flags(other, **tiny)], capsys,
                     log_compiles)
  assert message.startswith("error: the workdir's checkpoint is for (28, 28, 1) images, data_dir="), message
  assert "holds (32, 32, 1) images" in message


@pytest.mark.parametrize("program, args, expected", [
    ("cifar_svd", ["--config.final_prune.stratgy=energy"],
     "error: --config.final_prune.stratgy: the config has no field 'stratgy' (Did you mean \"strategy\""),
    ("cifar_svd", ["DATA:truncated_gzip"], "train-images-idx3-ubyte.gz cannot be read, truncated or corrupt"),
    ("pruning_from_scratch", ["--config=experiments/configs/nope.py"], "--config=experiments/configs/nope.py: "
                                                                       "cannot load the config file")])
def test_programs_print_one_error_line(good_data, tmp_path, program, args, expected):
  """The real programs, each in a fresh process: one `error:` line on stderr, no traceback, nothing compiled."""
  data_dir = good_data
  if args == ["DATA:truncated_gzip"]:
    data_dir, args = str(tmp_path / "data"), []
    shutil.copytree(good_data, data_dir)
    _truncate(data_dir)
  config = CONFIG if program == "cifar_svd" else FROM_SCRATCH
  proc = subprocess.run([sys.executable, "-m", f"experiments.{program}", config, f"--workdir={tmp_path / 'run'}",
                         *helpers.cli_flags(data_dir), *args], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", "JAX_LOG_COMPILES": "1"})
  assert proc.returncode == 1
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert not any(marker in proc.stderr for marker in COMPILE_LOGS), proc.stderr[-2000:]


@pytest.mark.parametrize("program", ["cifar_svd", "pruning_from_scratch", "paper_recipe", "compress"])
def test_training_programs_leave_workdir_to_their_own_parser(program):
  """absl parses its global flags first (``cli.absl_flags``): a global ``--workdir`` (``experiments.export``
  defines one for its own CLI) imported into a training program would swallow the run's ``--workdir``."""
  code = (f"import experiments.{program}; from absl import flags; "
          "print(sorted({'workdir', 'config'} & set(flags.FLAGS)))")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "[]"
