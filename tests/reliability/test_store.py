"""The MLflow store under racing first runs and damage: both racers succeed; a broken file is named, kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from explorec.config import TrackingConfig
from explorec.errors import StoreError
from explorec.tracking.store import configure_tracking
from tests.reliability.helpers import TINY, environment, explorec, store_uri

RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from explorec.config import TrackingConfig
    from explorec.tracking.store import configure_tracking
    barrier, name = Path(sys.argv[1]), sys.argv[2]
    (barrier / f"ready-{name}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.005)
    target = configure_tracking(TrackingConfig())
    client = MlflowClient(target.tracking_uri, registry_uri=target.tracking_uri)
    try:
        client.create_registered_model("race")
    except MlflowException:
        pass  # the other racer created it first
    client.set_registered_model_tag("race", f"writer-{name}", "done")
    print("OK", target.experiment_id)
    """
)


def race_first_open(home: Path, barrier: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start two processes that open the same fresh store at the same moment (after their imports)."""
    barrier.mkdir()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(barrier), name],
            env=environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 2:
        assert time.monotonic() < deadline and all(racer.poll() is None for racer in racers)
        time.sleep(0.01)
    (barrier / "go").touch()
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(racer.args, racer.returncode, out, err))
    return results


@pytest.mark.slow
def test_two_processes_opening_a_fresh_store_at_once_both_succeed(tmp_path: Path) -> None:
    """Three rounds: two processes race to create the same store; both write to it; it opens afterwards."""
    for round_ in range(3):
        home = tmp_path / f"home-{round_}"
        home.mkdir()
        results = race_first_open(home, tmp_path / f"barrier-{round_}")
        for result in results:
            assert result.returncode == 0, result.stderr[-3000:]
        assert {result.stdout.split()[-1] for result in results} == {
            results[0].stdout.split()[-1]
        }, "the racers saw different experiments"
        client = MlflowClient(store_uri(home), registry_uri=store_uri(home))
        tags = client.get_registered_model("race").tags
        assert {"writer-a", "writer-b"} <= set(tags)
        assert [e.name for e in client.search_experiments()].count("explorec") == 1


def test_an_empty_store_file_is_an_error_and_is_left_as_it_is(isolated_home: Path) -> None:
    """A zero-length mlflow.db is damage (explorec creates it whole): one line naming it, never re-created."""
    database = isolated_home / "mlruns" / "mlflow.db"
    database.parent.mkdir(parents=True)
    database.touch()
    with pytest.raises(StoreError) as raised:
        configure_tracking(TrackingConfig())
    message = str(raised.value)
    assert str(database) in message and "empty (0 bytes)" in message and "\n" not in message
    assert "restore it from a backup, or move it away" in message
    assert database.stat().st_size == 0


def test_a_truncated_or_foreign_store_file_is_an_error_naming_it(isolated_home: Path, tmp_path: Path) -> None:
    """A store cut in half, or a file that is not SQLite, fails with one line naming the file."""
    source = tmp_path / "source"
    source.mkdir()
    good = configure_tracking(TrackingConfig(tracking_uri=f"sqlite:///{source / 'mlflow.db'}"))
    client = MlflowClient(good.tracking_uri)
    for index in range(30):  # enough rows that the schema spans many pages
        client.create_run(good.experiment_id, run_name=f"run-{index}", tags={"filler": "x" * 500})
    data = (source / "mlflow.db").read_bytes()
    for name, content, problem in [
        ("truncated", data[: len(data) // 2], "is damaged"),
        ("foreign", b"these are not the bytes of a database\n", "is not an SQLite database"),
    ]:
        database = tmp_path / name / "mlflow.db"
        database.parent.mkdir()
        database.write_bytes(content)
        with pytest.raises(StoreError) as raised:
            configure_tracking(TrackingConfig(tracking_uri=f"sqlite:///{database}"))
        assert str(database) in str(raised.value) and problem in str(raised.value)
        assert "\n" not in str(raised.value)
        assert database.read_bytes() == content


@pytest.mark.slow
def test_two_pipelines_started_together_on_a_fresh_home_both_succeed(tmp_path: Path) -> None:
    """Two real `explorec pipeline` commands at once on one fresh home: both exit 0; the store works after."""
    home = tmp_path / "command-home"
    home.mkdir()
    command = [sys.executable, "-m", "explorec.cli", "pipeline", *TINY, "pipeline.simulate=false"]
    runs = [
        subprocess.Popen(command, env=environment(home), cwd=home, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    after = explorec(home, "promote", "--dry-run")
    assert after.returncode == 0, after.stderr[-3000:]
    assert "Traceback" not in after.stderr


def test_a_store_from_an_older_mlflow_says_how_to_upgrade_it(tmp_path: Path) -> None:
    """A store whose schema is behind this MLflow: one line naming it and the upgrade command, untouched."""
    import sqlite3

    source = configure_tracking(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'new.db'}"))
    old = tmp_path / "old.db"
    old.write_bytes((tmp_path / "new.db").read_bytes())
    with sqlite3.connect(old) as db:
        db.execute("UPDATE alembic_version SET version_num = '867495a8f9d4'")  # an MLflow 2 revision
    with pytest.raises(StoreError, match=r"older MLflow.*mlflow db upgrade sqlite:///") as raised:
        configure_tracking(TrackingConfig(tracking_uri=f"sqlite:///{old}"))
    assert str(old) in str(raised.value) and source.experiment_id
