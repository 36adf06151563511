"""Registry commands that cannot do what is asked end in one line on stderr and a non-zero exit, no traceback.

The fast tests call the CLI's `main` in this process (the same code path as the console script); the slow one
runs the real command in a subprocess to see exactly what a person sees.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import LoggedModelStatus

from explorec.cli import main
from explorec.config import TrackingConfig
from explorec.config.registry import GatesConfig
from explorec.registry.promotion import ModelRegistry
from explorec.tracking.store import configure_tracking
from tests.reliability.helpers import explorec

NAME = "explorec-two-tower"  # the default registered model the CLI uses
GOOD = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}


def champion_without_files(home: Path) -> Path:
    """Register v1 in `home`'s store, make it champion, then delete its model files; return their folder."""
    target = configure_tracking(TrackingConfig())
    registry = ModelRegistry(target.tracking_uri)
    client = registry.client
    run_id = client.create_run(target.experiment_id).info.run_id
    for key, value in GOOD.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    model = client.create_logged_model(target.experiment_id, name="recommender", source_run_id=run_id)
    files = home / "model-files"
    files.mkdir()
    (files / "MLmodel").write_text("flavors: {}\n")
    client.log_model_artifacts(model.model_id, str(files))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    version = registry.register_candidate(run_id, NAME)
    assert registry.promote(NAME, version, GatesConfig()).outcome == "promoted"
    stored = Path(model.artifact_location.removeprefix("file://"))
    shutil.rmtree(stored)
    return stored


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expected: str) -> str:
    """Run the CLI in this process; assert a non-zero exit and one `explorec <cmd>: error:` line on stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("explorec ")]
    assert code != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"explorec {argv[0]}: error: "), err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def no_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process CLI calls start no watchdog (it would watch the test process itself)."""
    monkeypatch.setenv("EXPLOREC_WATCHDOG", "0")


def test_register_an_unknown_run(capsys: pytest.CaptureFixture[str]) -> None:
    """`register --run-id` of a run the store does not hold."""
    one_line_error(capsys, ["register", "--run-id", "0123456789abcdef"], "no run '0123456789abcdef'")


def test_register_a_run_that_did_not_finish(capsys: pytest.CaptureFixture[str]) -> None:
    """`register --run-id` of a run that was KILLED (never packaged, never reopened)."""
    target = configure_tracking(TrackingConfig())
    client = mlflow.MlflowClient(target.tracking_uri)
    run_id = client.create_run(target.experiment_id).info.run_id
    client.set_terminated(run_id, "KILLED")
    one_line_error(capsys, ["register", "--run-id", run_id], "is KILLED, not FINISHED")
    assert client.get_run(run_id).info.status == "KILLED"


def test_promote_on_an_empty_registry(capsys: pytest.CaptureFixture[str]) -> None:
    """`promote` and `promote --dry-run` with nothing registered."""
    one_line_error(capsys, ["promote"], "is registered yet")
    one_line_error(capsys, ["promote", "--dry-run"], "is registered yet")


def test_promote_an_unknown_version_and_a_champion_without_files(
    isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`promote --version 99` names the versions there are; a version whose files were deleted is refused."""
    stored = champion_without_files(isolated_home)
    one_line_error(capsys, ["promote", "--version", "99"], "has no version 99 (versions: 1)")
    line = one_line_error(capsys, ["promote", "--version", "1", "--dry-run"], "v1 has no model files")
    assert str(stored) in line
    one_line_error(capsys, ["promote", "--version", "1", "--force", "--reason", "x"], "v1 has no model files")


@pytest.mark.slow
def test_registry_errors_of_the_real_command(isolated_home: Path) -> None:
    """The console command: each case exits non-zero with exactly one stderr line and no traceback."""
    empty = isolated_home / "empty"
    empty.mkdir()
    cases = [(empty, ["promote"]), (empty, ["register", "--run-id", "0123456789abcdef"])]
    champion_without_files(isolated_home)
    cases += [(isolated_home, ["promote", "--version", "99"]), (isolated_home, ["promote", "--dry-run"])]
    for home, argv in cases:
        done = explorec(home, *argv)
        lines = [line for line in done.stderr.splitlines() if line.strip() and "INFO mlflow" not in line]
        assert done.returncode != 0 and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"explorec {argv[0]}: error: "), (argv, lines)
