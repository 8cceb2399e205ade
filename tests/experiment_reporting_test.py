"""Run reporting: the plots take every kind of history row (a prune-only stage's row has no train metrics)."""

import numpy as np

from experiments import reporting


def test_plots_accept_a_prune_stage_row_without_train_metrics(tmp_path):
  """The prune stage of experiments.paper_recipe logs one row of eval metrics only; plotting it used to raise
  KeyError('train_accuracy') after summary.json was written, leaving the stage half-finished."""
  history = [{"epoch": 0, "test_accuracy": 0.83, "total_rank": 161}]
  params = {"conv": {"U": np.eye(3), "s": np.array([2.0, -1.0, 0.5]), "V": np.eye(3)}}
  paths = reporting.plot_all(str(tmp_path), history, params)
  assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["accuracy.png", "ranks.png", "spectra.png"]
  assert all((tmp_path / name).stat().st_size > 0 for name in ("accuracy.png", "ranks.png", "spectra.png"))
  training = [{"epoch": 1, "train_accuracy": 0.7, "test_accuracy": 0.8, "total_rank": 281}, *history]
  assert len(reporting.plot_all(str(tmp_path), training, params)) == 3
