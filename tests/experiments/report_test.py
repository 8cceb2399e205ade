"""Run reporting: the figures' panels, event markers, fine-tune span and spectra cuts, on synthetic histories and a
tiny real run; the plots take every kind of history row (a prune-only stage's row has no train metrics)."""

import os
import types

import numpy as np
import pytest

from experiments.report import figures, layer_figures, spectra
from experiments.run import loop
from jaxsvd import checkpoint
from tests import helpers

FIGURES = ["accuracy.png", "compression.png", "layer_ranks.png", "loss.png", "spectra.png"]


def names(paths):
  return sorted(os.path.basename(p) for p in paths)


def event_lines(ax, kind):
  return [line.get_xdata()[0] for line in ax.lines if line.get_gid() == f"event:{kind}"]


def finetune_span(ax):
  (span,) = [p for p in ax.patches if p.get_gid() == "finetune"]
  x0 = span.get_x()
  return x0, x0 + span.get_width()


def synthetic_run():
  """8 epochs of 3 layers: online prunes after 2-5 (ranks -1 each), a final prune after 6, fine-tune 7-8."""
  original = {"net/a": 8, "net/b": 12, "net/c": 16}
  history, events, ranks = [], [], dict(original)
  for epoch in range(1, 9):
    if 2 <= epoch <= 6:
      ranks = {p: r - (1 if epoch < 6 else 3) for p, r in ranks.items()}
      events.append({"epoch": epoch, "kind": "final" if epoch == 6 else "online", "ranks": dict(ranks),
                     "total_rank": sum(ranks.values())})
    row = {"epoch": epoch, "train_loss": 2.0 / epoch + 0.5, "train_ce": 2.0 / epoch + 0.01, "train_orth": 0.01 / epoch,
           "test_loss": 2.1 / epoch, "train_accuracy": 0.1 * epoch, "test_accuracy": 0.09 * epoch,
           "total_rank": sum(ranks.values()), "macs": 1000 * sum(ranks.values()), "params": 500 + sum(ranks.values()),
           "finetune": int(epoch > 6)}
    if epoch <= 6:
      row["train_sparsity"] = 30.0 - epoch
    else:
      row["train_loss"] = row["train_ce"] + 0.01 * row["train_orth"]
    history.append(row)
  summary = {"rank_before": 36, "macs_before": 36000, "params_before": 536}
  return history, events, summary, types.SimpleNamespace(original_ranks=original)


def test_plots_accept_a_prune_stage_row_without_train_metrics(tmp_path):
  """The prune stage of experiments.paper_recipe logs one row of eval metrics only; plotting it used to raise
  KeyError('train_accuracy') after summary.json was written, leaving the stage half-finished."""
  history = [{"epoch": 0, "test_accuracy": 0.83, "total_rank": 161}]
  params = {"conv": {"U": np.eye(3), "s": np.array([2.0, -1.0, 0.5]), "V": np.eye(3)}}
  paths = figures.plot_all(str(tmp_path), history, params)
  assert names(paths) == ["accuracy.png", "compression.png", "loss.png", "spectra.png"]  # no per-layer ranks known
  assert all(os.path.getsize(p) > 0 for p in paths)
  training = [{"epoch": 1, "train_accuracy": 0.7, "test_accuracy": 0.8, "total_rank": 281}, *history]
  assert len(figures.plot_all(str(tmp_path), training, params)) == 4


def test_accuracy_marks_each_event_at_its_epoch_and_shades_the_fine_tune():
  history, events, _, _ = synthetic_run()
  (ax,) = figures.accuracy_figure(history, events).axes
  assert ax.get_title() == "accuracy (final test 0.7200, best 0.7200)"
  labelled = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
  np.testing.assert_allclose(labelled["test"].get_ydata(), [0.09 * e for e in range(1, 9)])
  assert event_lines(ax, "online") == [2, 3, 4, 5] and event_lines(ax, "final") == [6]
  assert {"online prune (×4)", "final prune (after epoch 6)"} <= set(labelled)
  assert finetune_span(ax) == (6, 8)


def test_loss_splits_ce_from_the_weighted_and_the_raw_regularizer_terms():
  history, events, _, _ = synthetic_run()
  objective, terms = figures.loss_figure(history, events).axes
  assert objective.get_title().startswith("objective") and terms.get_title().startswith("regularizer terms")
  curves = {line.get_label(): line for line in objective.lines if not line.get_label().startswith("_")}
  assert {"train loss = CE + Σ λ·term", "train CE", "test CE", "Σ λ·term = train loss − CE"} <= set(curves)
  reg = curves["Σ λ·term = train loss − CE"]
  np.testing.assert_allclose(reg.get_ydata()[:6], 0.49)  # loss − CE, drops where fine-tuning turns λs off
  assert objective.get_yscale() == "log" and "log scale" in objective.get_ylabel()
  raw = {line.get_label().split(" =")[0]: line for line in terms.lines if not line.get_label().startswith("_")}
  assert list(raw["train_sparsity"].get_xdata()) == [1, 2, 3, 4, 5, 6]  # λs = 0 in the fine-tune: not logged
  assert raw["train_sparsity"].get_label().endswith("(λ = 0 after epoch 6)")  # and the figure says so
  assert [t.get_text() for t in terms.texts if t.get_gid() == "off:train_sparsity"] == ["λ off from epoch 7"]
  assert not raw["train_orth"].get_label().endswith(")")
  assert list(raw["train_orth"].get_xdata()) == list(range(1, 9))
  assert terms.get_yscale() == "log" and "unweighted" in terms.get_ylabel()
  assert event_lines(terms, "final") == [6] and finetune_span(objective) == (6, 8)


def test_compression_starts_at_the_summary_and_steps_at_the_events():
  history, events, summary, _ = synthetic_run()
  axes = figures.compression_figure(history, events, summary).axes
  assert [ax.get_title() for ax in axes] == ["total rank: 36 → 15 (2.40× fewer)",
                                             "MACs per example: 36.00k → 15.00k (2.40× fewer)",
                                             "params: 536 → 515 (1.04× fewer)"]
  rank = axes[0].lines[0]
  assert rank.get_drawstyle() == "steps-post" and list(rank.get_xdata()[:3]) == [0, 1, 2]
  assert list(rank.get_ydata()) == [36, 36, 33, 30, 27, 24, 15, 15, 15]
  assert all(event_lines(ax, "final") == [6] for ax in axes)


def test_layer_ranks_follow_the_events_entries():
  history, events, _, arch = synthetic_run()
  fig = layer_figures.layer_ranks_figure(history, events, arch.original_ranks)
  (ax, _colorbar) = fig.axes
  fraction = np.asarray(ax.images[0].get_array())
  assert fraction.shape == (3, 9)  # layers × (start + 8 epochs)
  np.testing.assert_allclose(fraction[:, 0], 1.0)
  np.testing.assert_allclose(fraction[2] * 16, [16, 16, 15, 14, 13, 12, 9, 9, 9])
  assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
  assert layer_figures.layer_ranks_figure(history, [], None) is None


def test_spectra_draw_the_kept_part_the_tail_and_the_cut(tmp_path):
  history, events, _, _ = synthetic_run()
  rng = np.random.default_rng(0)
  before = {"net/a": np.sort(rng.random(10))[::-1] + 0.1, "net/b": np.sort(rng.random((2, 6)))[:, ::-1]}
  kept = {"net/a": 4, "net/b": 6}
  path = spectra.spectra_path(str(tmp_path), 6, "final")
  spectra.save_spectra(path, {p: s * 2 for p, s in before.items()}, kept, "stale")
  spectra.save_spectra(path, before, kept, "final prune after epoch 6, energy=0.05")  # a redone epoch overwrites
  assert sorted(os.listdir(tmp_path)) == ["spectra_epoch6_final.npz"]
  info, layers = layer_figures.spectra_record(str(tmp_path), events)  # the final prune's, not the online ones'
  assert info == "final prune after epoch 6, energy=0.05" and list(layers) == ["net/a", "net/b"]
  np.testing.assert_allclose(layers["net/b"][0], before["net/b"], rtol=1e-6)
  params = {"net": {"a": {"U": np.eye(4), "s": before["net/a"][:4], "V": np.eye(4)}}}
  fig = layer_figures.spectra_figure((info, layers), params)
  a, b = fig.axes
  assert fig.get_suptitle() == info and a.get_title().startswith("a\n4/10 kept, ")
  assert [line.get_xdata()[0] for line in a.lines if line.get_gid() == "cut"] == [4.5]
  colors = [line.get_label() for line in a.lines]
  assert colors == ["kept", "pruned tail", "the kept directions at the end of the run", "cut"]
  assert len(b.lines) == 3 and b.get_title() == "b\n6/6 kept, 100.0% of Σs²"  # 2 stacked slices, nothing cut
  assert a.get_yscale() == "log" and a.get_ylabel() == "|s| (log scale)" and b.get_xlabel().startswith("index")


def test_spectra_of_many_layers_show_the_largest():
  layers = {f"l{i:02d}": (np.linspace(1, 0.1, 4 + i), 2) for i in range(30)}
  fig = layer_figures.spectra_figure(("x", layers), {})
  titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
  assert len(titles) == 24 and titles[0].startswith("l06\n")
  assert fig.get_suptitle() == "x; the 24 largest of 30 layers"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return helpers.write_fashion_mnist(str(tmp_path_factory.mktemp("fm")))


def test_a_tiny_run_plots_its_events_and_records_the_spectra_it_cut(data_dir, tmp_path):
  workdir = str(tmp_path)
  summary = loop.run(helpers.tiny_config(data_dir, plots=True), workdir)  # online after 2, 3; final after 3
  assert names(summary["plots"]) == FIGURES
  events = checkpoint.restore(os.path.join(workdir, "checkpoints")).meta["pruning_events"]
  assert [(e["epoch"], e["kind"]) for e in events] == [(2, "online"), (3, "online"), (3, "final")]
  assert sorted(f for f in os.listdir(workdir) if f.startswith("spectra_epoch")) == [
      "spectra_epoch2_online.npz", "spectra_epoch3_final.npz", "spectra_epoch3_online.npz"]
  info, layers = spectra.load_spectra(spectra.spectra_path(workdir, 3, "final"))
  assert info.startswith("final prune after epoch 3, energy=0.3")
  assert {p: k for p, (_, k) in layers.items()} == events[-1]["ranks"]
  assert {p: s.shape[-1] for p, (s, _) in layers.items()} == events[1]["ranks"]  # what the online prune left
  history = [{"epoch": e + 1, "finetune": int(e == 3), "test_accuracy": 0.5} for e in range(4)]
  ax = figures.accuracy_figure(history, events).axes[0]
  assert event_lines(ax, "online") == [2, 3] and event_lines(ax, "final") == [3] and finetune_span(ax) == (3, 4)
  params = checkpoint.restore(os.path.join(workdir, "checkpoints")).variables["params"]
  fig = layer_figures.spectra_figure((info, layers), params)
  cuts = [line.get_xdata()[0] for ax in fig.axes for line in ax.lines if line.get_gid() == "cut"]
  assert cuts == [k + 0.5 for _, (_, k) in layers.items()]
