"""The figures logged as run artifacts: valid PNGs with the panels and series they promise."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pandas as pd

from explorec.config.registry import GatesConfig
from explorec.registry.gates import decide
from explorec.tracking import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    """Whether the file exists, starts with the PNG signature and decodes to a non-empty image."""
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and matplotlib.image.imread(path).size > 0


def test_training_curves_have_a_loss_and_an_ndcg_panel_with_the_best_epoch_marked(tmp_path: Path) -> None:
    history = [
        {"epoch": 0.0, "train/loss_epoch": 6.0, "val/ndcg@10": 0.02},
        {"epoch": 1.0, "train/loss_epoch": 5.1, "val/ndcg@10": 0.05},
        {"epoch": 2.0, "train/loss_epoch": 4.9, "val/ndcg@10": 0.04},
    ]
    figure = plots.training_curves_figure(history)
    loss_axis, ndcg_axis = figure.axes
    assert list(loss_axis.lines[0].get_ydata()) == [6.0, 5.1, 4.9]
    assert list(ndcg_axis.lines[0].get_xdata()) == [1, 2, 3]  # epochs counted from 1
    assert "best: epoch 2, 0.0500" in [text.get_text() for text in ndcg_axis.get_legend().get_texts()]
    assert _is_png(plots.training_curves(history, tmp_path / "curves.png"))


def test_a_refit_without_validation_still_draws_its_loss(tmp_path: Path) -> None:
    figure = plots.training_curves_figure([{"epoch": 0.0, "train/loss_epoch": 3.0}])
    assert len(figure.axes[0].lines[0].get_ydata()) == 1
    assert "no validation" in figure.axes[1].texts[0].get_text()


def test_lift_intervals_draw_one_interval_per_policy_and_calibration_and_the_zero_line(
    tmp_path: Path,
) -> None:
    rows = [
        {"calibration": c, "policy": p, "mean_difference": m, "ci_low": m - 0.1, "ci_high": m + 0.1}
        for c in ("main", "sparse")
        for p, m in (("linucb@1", 0.3), ("mmr@0.5", -0.02))
    ]
    figure = plots.lift_intervals_figure(rows, control="greedy_online", outcome="expected_clicks")
    assert [axis.get_title() for axis in figure.axes] == ["calibration main", "calibration sparse"]
    for axis in figure.axes:
        assert len(axis.containers) == 2  # one error bar per policy
        assert any(list(line.get_xdata()) == [0.0, 0.0] for line in axis.lines)  # the zero line
        low, high = axis.get_xlim()
        assert low < -0.12 and high > 0.4  # every interval and 0 inside the axis
        labels = [label.get_text() for label in axis.get_yticklabels()]
        assert labels == ["linucb@1\n+0.3 [+0.2, +0.4]", "mmr@0.5\n-0.02 [-0.12, +0.08]"]
    assert _is_png(plots.lift_intervals(rows, tmp_path / "lift.png", control="g", outcome="clicks"))


def test_version_comparison_draws_candidate_champion_and_both_bounds_per_metric(tmp_path: Path) -> None:
    gates = GatesConfig()
    candidate = {gate.metric: 0.5 for gate in gates.metric_gates().values()}
    champion = {gate.metric: 0.6 for gate in gates.metric_gates().values()}
    decision = decide(candidate, champion, gates).to_dict()
    figure = plots.version_comparison_figure(decision, candidate="v2 (candidate)", champion="v1 (champion)")
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert len(visible) == len(gates.metric_gates())
    ndcg = next(axis for axis in visible if axis.get_title().startswith("final/test/ndcg_at_10"))
    assert [tick.get_text() for tick in ndcg.get_xticklabels()] == ["v2 (candidate)", "v1 (champion)"]
    assert len(ndcg.patches) == 2 and len(ndcg.get_legend().get_texts()) == 2  # floor + champion bound
    assert "FAIL" in ndcg.get_title()  # 0.5 < 0.6 - 0.005
    assert figure._suptitle.get_text().startswith("gates FAILED")
    assert _is_png(plots.version_comparison(decision, tmp_path / "gates.png"))


def test_the_tradeoff_of_one_policy_at_one_rate_spans_the_whole_rate_axis(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "policy": ["oracle", "static", "greedy_online", "random", "epsilon_greedy@1"],
            "exploration_rate": [0.0, 0.0, 0.0, 1.0, 1.0],
            "expected_clicks": [9.0, 1.0, 1.2, 0.5, 1.1],
            "ild": [0.5, 0.4, 0.42, 0.9, 0.6],
            "new_clusters_clicked": [3.0, 1.0, 1.1, 2.0, 1.5],
        }
    )
    figure = plots.tradeoff_figure(
        frame, calibration="main", not_exploring=("oracle", "static", "greedy_online", "random")
    )
    clicks = figure.axes[0]
    assert clicks.get_xlim() == (-0.05, 1.05)
    assert clicks.get_ylim()[1] < 9.0  # the oracle (not drawn) does not flatten the others
    assert len(clicks.lines) == 4 and not clicks.texts  # the policy + 3 baseline lines, no overlapping labels
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [
        "epsilon_greedy",
        "greedy_online",
        "static",
        "random",
    ]
    path = plots.tradeoff(frame, tmp_path / "t.png", calibration="main", not_exploring=("oracle",))
    assert _is_png(path)
