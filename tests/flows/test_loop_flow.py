"""The loop flow on a tiny synthetic world: served rounds, judged candidates, the loop's own model."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.loop import loop_flow

TINY_LOOP = [
    "data=synthetic",
    "data.synthetic.n_users=80",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=2400",
    "encoder=none",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
    "simulate.min_user_positives=8",
    "simulate.tune_users=10",
    "simulate.test_users=20",
    "simulate.n_text_clusters=4",
    "simulate.calibrations=[{name:main,mean_click_probability:0.1,top10_click_probability:0.2}]",
    "policy=epsilon_greedy",
    "policy.exploration_rate=0.3",
    "loop.slate_size=5",
    "loop.visits=2",
    "loop.rounds=3",
    "gates.ndcg_at_10.threshold=0.0",
    "gates.recall_at_20.threshold=0.0",
    "gates.intra_list_diversity.threshold=0.0",
    "gates.catalog_coverage.threshold=0.0",
    "gates.exposure_gini.threshold=1.0",
    "gates.ope_min_effective_samples=5",
]


@pytest.mark.slow
def test_loop_serves_logs_judges_and_records_every_round(isolated_home: Path) -> None:
    """3 rounds: 20 logged slates each, candidates judged in rounds 2 and 3, production model untouched."""
    from explorec.serving.impressions import ImpressionLog

    summary = loop_flow(overrides=TINY_LOOP)
    client = MlflowClient(f"sqlite:///{isolated_home / 'mlruns' / 'mlflow.db'}")
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    rounds = summary["rounds"]
    assert [row["round"] for row in rounds] == [1, 2, 3]
    history = client.get_metric_history(summary["run_id"], "traffic/clicks_per_user")
    assert sorted(metric.step for metric in history) == [1, 2, 3]
    artifacts = {item.path for item in client.list_artifacts(summary["run_id"])}
    assert {"rounds.csv", "loop.md", "plots"} <= artifacts
    assert [a.path for a in client.list_artifacts(summary["run_id"], "plots")] == ["plots/loop_curves.png"]
    folder = Path(summary["folder"])
    for round_index in (1, 2, 3):
        log = ImpressionLog(f"sqlite:///{folder / f'round-{round_index:03d}' / 'impressions.db'}")
        assert log.counts()["impressions"] == 10 * 2  # every traffic user, every visit
        log.close()
    judged = [row for row in rounds if row.get("candidate/version") == row.get("candidate/version")]
    assert [row["round"] for row in judged] == [2, 3]
    for row in judged:
        assert row["candidate/snips_ci_low"] <= row["candidate/snips"] <= row["candidate/snips_ci_high"]
        assert 0.0 < row["candidate/simulated_value"] < 1.0
    assert set(summary["coverage"]) >= {"ips", "snips"}
    assert all(counts["judged"] == 2 for counts in summary["coverage"].values())
    names = {model.name for model in client.search_registered_models()}
    assert names == {"explorec-loop"}  # the loop never registers under (or promotes) the production name
    versions = client.search_model_versions("name='explorec-loop'")
    assert len(versions) == 3  # the first champion and the two judged candidates
    last = rounds[-1]
    champion = last["candidate/version"] if last["candidate/promoted"] == 1.0 else last["champion/version"]
    assert float(client.get_model_version_by_alias("explorec-loop", "champion").version) == champion


def test_a_loop_sharing_the_production_name_is_refused(isolated_home: Path) -> None:
    """loop.registered_model equal to tracking.registered_model is a clear error before any training."""
    from explorec.pipeline.loop_traffic import LoopError

    with pytest.raises(LoopError, match="never move"):
        loop_flow(overrides=[*TINY_LOOP, "loop.registered_model=explorec-two-tower"])
    assert not (isolated_home / "mlruns" / "loop").exists()
