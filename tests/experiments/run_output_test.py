"""What a run shows: only its method's quantities (no rank fields without SVD layers), the whole start-up diff, a
log without progress-bar carriage returns when stderr is a file, the epoch line before its events, and the next
command at the end."""

import csv
import json
import os
import subprocess
import sys

import pytest

from experiments.configs import default, fashion_mnist
from experiments.report import figures, metrics
from experiments.run import startup
from jaxsvd import checkpoint
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SLIMMING = {"svd.enabled": False, "pruning.enabled": False, "slimming.enabled": True, "slimming.amount": 0.3,
            "slimming.prune_epoch": 2, "plots": True, "progress_bar": True}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")))


@pytest.fixture(scope="module")
def slimming_run(data_dir, tmp_path_factory):
  """A tiny slimming run through the command line, stderr redirected to a file (not a terminal)."""
  workdir = str(tmp_path_factory.mktemp("slim") / "run")
  log_path = os.path.join(os.path.dirname(workdir), "log.txt")
  with open(log_path, "w") as log:
    proc = subprocess.run([sys.executable, "-m", "experiments.cifar_svd", "--config=fashion_mnist",
                           f"--workdir={workdir}", *helpers.cli_flags(data_dir, **SLIMMING)], cwd=REPO,
                          stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  with open(log_path, newline="") as f:
    text = f.read()
  assert proc.returncode == 0, text[-3000:]
  return workdir, text


def test_a_redirected_log_has_no_carriage_returns_and_names_the_loss(slimming_run):
  _, text = slimming_run
  assert "\r" not in text  # progress_bar=True, but stderr is a file: one line per epoch, no tqdm updates
  epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
  assert len(epochs) == 4 and all(" | test acc " in line for line in epochs)
  assert all(line.split(" | ")[1].startswith("train CE ") for line in epochs)  # no regularizer on: CE alone


def test_the_epoch_line_comes_first_then_its_event_then_the_recompile(slimming_run):
  _, text = slimming_run
  lines = text.splitlines()
  epoch2 = next(i for i, line in enumerate(lines) if line.startswith("epoch   2 |"))
  assert lines[epoch2 + 1].startswith("slimming after epoch 2: ")
  assert lines[epoch2 + 2].startswith("recompiled for the new architecture")
  assert lines[epoch2 + 3].startswith("epoch   3 |")


def test_a_run_without_svd_layers_shows_no_rank_fields(slimming_run):
  workdir, text = slimming_run
  assert "rank" not in text.lower()  # epoch lines, start-up diff, summary table
  summary = json.load(open(os.path.join(workdir, "summary.json")))
  assert not [k for k in summary if "rank" in k or k.startswith("svd_")]
  assert summary["bn_channels_after"] < summary["bn_channels_before"]
  rows = list(csv.DictReader(open(os.path.join(workdir, "metrics.csv"))))
  assert "total_rank" not in rows[0] and [int(r["bn_channels"]) for r in rows][1:] == [summary["bn_channels_after"]] * 3
  assert int(rows[0]["bn_channels"]) == summary["bn_channels_before"]
  assert sorted(f for f in os.listdir(workdir) if f.endswith(".png")) == ["accuracy.png", "compression.png",
                                                                         "loss.png"]
  meta = checkpoint.restore(os.path.join(workdir, "checkpoints")).meta
  axes = figures.compression_figure(meta["history"], meta["pruning_events"], summary).axes
  assert [ax.get_title().split(":")[0] for ax in axes] == ["BN channels", "MACs per example", "params"]
  assert "BN channels (slimming) | 240 -> " in text and "python -m experiments.export --workdir=" in text


def test_a_dense_summary_table_has_no_svd_rows():
  summary = {"params_before": 10, "params_after": 10, "macs_before": 5, "macs_after": 5, "flops_speedup": 1.0}
  table = metrics.summary_table(summary, [("test accuracy", "0.9000")])
  assert [line.split(" |")[0].strip() for line in table.splitlines()] == ["test accuracy", "params (all layers)",
                                                                           "MACs / example"]
  row = {"epoch": 1, "params": 10, "macs": 5, "time_train": 1.0, "time_eval": 1.0, "time_prune": 0.0,
         "images_per_sec": 3.0}
  assert "rank" not in metrics.epoch_line(row, "x", "images")
  assert "| rank 7 |" in metrics.epoch_line({**row, "total_rank": 7}, "x", "images")


def test_the_start_up_diff_names_every_field_wrapped():
  c = fashion_mnist.get_config()
  for i, name in enumerate(["batch_size", "eval_batch_size", "num_epochs", "seed", "max_steps_per_epoch"]):
    c[name] = 7 + i
  c.optimizer.learning_rate, c.optimizer.momentum, c.data_dir = 0.123, 0.5, "/a/long/path/" * 6
  text = startup.config_changes(c, default.get_config())
  flat = startup._flat(c.to_dict())
  changed = [k for k, v in flat.items() if startup._flat(default.get_config().to_dict()).get(k, object()) != v]
  assert len(changed) > 16 and "more)" not in text
  assert all(f"{k}=" in text for k in changed)
  assert all(len(line) <= 120 and line.startswith("  ") for line in text.splitlines())
  c.svd.enabled = False  # a dense run: the fields that act on SVD layers only are not named
  assert "pruning." not in startup.config_changes(c, default.get_config())
