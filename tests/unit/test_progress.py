"""Progress lines (a start line, throttled lines with share and ETA, a closing line); quiet libraries."""

from __future__ import annotations

import logging
import warnings

import pytest

from explorec import progress
from explorec.progress import Progress, duration


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_are_throttled_and_carry_share_elapsed_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    bar = Progress("training", 100, unit="batches", interval=30.0, clock=clock)
    bar.start("epochs: up to 10")
    clock.now = 10.0
    assert bar.advance(10) is False  # 10 s since the start line: too soon
    clock.now = 31.0
    assert bar.advance(10, "loss 5.0") is True
    clock.now = 40.0
    assert bar.advance(10) is False
    bar.finish()
    assert bar.lines == [
        "training: started, 100 batches; epochs: up to 10",
        "training: 20/100 batches, 20%, elapsed 0:31, ETA 2:04 - loss 5.0",
        "training: done, 30/100 batches in 0:40",
    ]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(" | progress | " in line for line in err)  # timestamped, on stderr
    assert err[1].endswith("training: 20/100 batches, 20%, elapsed 0:31, ETA 2:04 - loss 5.0")


def test_a_disabled_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress("encoding", 3, interval=0.0, enabled=False)
    bar.start()
    bar.advance(3)
    bar.finish()
    assert len(bar.lines) == 3 and capsys.readouterr().err == ""


def test_durations_read_as_a_clock() -> None:
    assert [duration(s) for s in (0, 59.6, 61, 3725)] == ["0:00", "1:00", "1:01", "1:02:05"]


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(progress.INTERVAL_ENV, "5")
    assert progress.interval_s() == 5.0
    monkeypatch.setenv(progress.INTERVAL_ENV, "soon")
    assert progress.interval_s() == progress.DEFAULT_INTERVAL_S


def test_quiet_libraries_hides_other_packages_deprecations_and_mlflow_noise(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress.quiet_libraries()
        warnings.warn_explicit("old", FutureWarning, "x.py", 1, module="lightning.pytorch.x")
        warnings.warn_explicit("ours", FutureWarning, "y.py", 1, module="explorec.models.fit")
    assert [str(w.message) for w in caught] == ["ours"]
    import os

    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    with caplog.at_level(logging.INFO, logger="mlflow.pyfunc"):
        logging.getLogger("mlflow.pyfunc").warning("Passing a Python object as `python_model` causes ...")
        logging.getLogger("mlflow.pyfunc").warning("a real problem")
    assert [record.getMessage() for record in caplog.records] == ["a real problem"]


def test_lightning_lines_go_through_the_root_handler_only_once_it_has_one() -> None:
    lightning = logging.getLogger("lightning.pytorch")
    own = logging.StreamHandler()
    lightning.addHandler(own)
    lightning.propagate = False
    root = logging.getLogger()
    added = logging.NullHandler()
    try:
        root.addHandler(added)
        progress.single_lightning_output()
        assert own not in lightning.handlers and lightning.propagate
    finally:
        root.removeHandler(added)
        lightning.removeHandler(own)
