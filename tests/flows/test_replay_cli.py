"""`python -m explorec.registry.replay` on a training run of tiny synthetic data."""

from __future__ import annotations

import json

import pytest

from explorec.registry.replay import main as replay_main
from flows.train import train_flow

from .conftest import TINY_SYNTHETIC

TINY = [*TINY_SYNTHETIC, "model.embedding_dim=16", "trainer.max_epochs=1", "policy=linucb"]


def test_replay_packages_the_run_and_compares_with_greedy(capsys: pytest.CaptureFixture[str]) -> None:
    """The run's recommender is rebuilt as registration builds it and replayed for every configuration."""
    run_id = train_flow(overrides=TINY)["run_id"]
    capsys.readouterr()
    arguments = ["--run-id", run_id, "--evaluation", "test", "--visits", "2", "--k", "3"]
    code = replay_main([*arguments, "--rates", "0,1", "--feedback-weights", "1,10", "--json", *TINY])
    output = capsys.readouterr().out
    summary = json.loads(output.strip().splitlines()[-1])
    assert code == 0 and "# Session replay (test items held out)" in output
    assert summary["evaluation"] == "test" and summary["visits"] == 2 and summary["k"] == 3
    labels = [row["policy"] for row in summary["rows"]]
    assert labels == [
        "greedy (control)",
        "linucb@0 (feedback weight 1)",
        "linucb@0 (feedback weight 10)",
        "linucb@1 (feedback weight 1)",
        "linucb@1 (feedback weight 10)",
    ]
    assert all(row["ci_low"] <= row["difference"] <= row["ci_high"] for row in summary["rows"][1:])
