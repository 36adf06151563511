"""The pipeline steps' typed results print the same JSON summaries as before, key for key."""

from __future__ import annotations

from explorec.config import compose
from explorec.models.train import TrainingResult
from explorec.pipeline.steps import PromotionOutcome, RegistrationOutcome, SimulationOutcome
from explorec.tracking.store import TrackingTarget

TARGET = TrackingTarget("sqlite:///mlflow.db", "7", "file:///artifacts")
METRICS = {"test": {"ndcg@10": 0.25}}


def test_a_fresh_training_result_reports_its_best_epoch_and_a_reused_one_does_not() -> None:
    cfg = compose([])
    fresh = TrainingResult.of_run(
        cfg,
        TARGET,
        "run",
        epochs_run=3,
        fit_time_s=1.234,
        metrics=METRICS,
        best_val_ndcg_at_10=0.3,
        best_epoch=1,
    )
    assert list(fresh.to_summary()) == [
        "run_id",
        "experiment_id",
        "tracking_uri",
        "encoder",
        "dataset",
        "split",
        "best_epoch_val_ndcg@10",
        "best_epoch",
        "epochs_run",
        "fit_time_s",
        "metrics",
    ]
    assert fresh.to_summary()["fit_time_s"] == 1.23
    assert fresh.to_summary()["encoder"] == cfg.encoder.name
    reused = TrainingResult.of_run(cfg, TARGET, "run", epochs_run=3, fit_time_s=1.234, metrics=METRICS)
    assert "best_epoch" not in reused.to_summary()
    assert reused.experiment_id == "7"


def test_a_skipped_simulation_reports_only_why() -> None:
    assert SimulationOutcome.skipped_because("switched off").to_summary() == {
        "skipped": "switched off",
        "cache": "skipped",
    }
    ran = SimulationOutcome(cache="hit", run_id="sim", policy="mmr@0.5", control="greedy_online")
    assert list(ran.to_summary()) == [
        "run_id",
        "policy",
        "control",
        "metrics",
        "gate_metric",
        "recommender",
        "runtime_s",
        "cache",
    ]


def test_registration_and_promotion_summaries_keep_their_key_order() -> None:
    registration = RegistrationOutcome("model", "2", True, [], "md", "2", "1", "miss")
    assert list(registration.to_summary()) == [
        "registered_model",
        "version",
        "gate_passed",
        "gate_reasons",
        "decision_markdown",
        "challenger",
        "champion",
        "cache",
        "ope",
    ]
    promotion = PromotionOutcome("model", "2", "promoted", True, "2", [], "md")
    assert list(promotion.to_summary()) == [
        "registered_model",
        "version",
        "outcome",
        "promoted",
        "champion",
        "gate_reasons",
        "decision_markdown",
        "interrupted",
    ]
