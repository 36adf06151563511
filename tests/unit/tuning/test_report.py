"""Pareto front and the documented selection rule (best accuracy among trials clearing the floor)."""

from __future__ import annotations

import math

import pandas as pd

from explorec.tuning.report import TrialRecord, markdown_table, pareto_front, select_candidate, trials_table


def record(number: int, accuracy: float, diversity: float, state: str = "COMPLETE") -> TrialRecord:
    """A trial record with the given objectives."""
    return TrialRecord(number=number, state=state, accuracy=accuracy, diversity=diversity)


TRIALS = [
    record(0, 0.10, 0.50),
    record(1, 0.08, 0.70),
    record(2, 0.07, 0.60),  # dominated by 1
    record(3, 0.12, 0.30),
    record(4, 0.20, 0.90, state="PRUNED"),  # not complete: never on the front
    record(5, math.nan, math.nan, state="FAIL"),
]


def test_pareto_front_keeps_the_non_dominated_complete_trials() -> None:
    assert [r.number for r in pareto_front(TRIALS)] == [0, 1, 3]


def test_best_accuracy_among_trials_that_clear_the_floor() -> None:
    selection = select_candidate(pareto_front(TRIALS), diversity_floor=0.4)
    assert selection.trial is not None and selection.trial.number == 0
    assert selection.cleared_floor
    assert selection.message.startswith("trial 0")


def test_no_floor_takes_the_most_accurate() -> None:
    selection = select_candidate(pareto_front(TRIALS), diversity_floor=0.0)
    assert selection.trial is not None and selection.trial.number == 3


def test_falls_back_to_the_most_diverse_with_a_clear_message() -> None:
    selection = select_candidate(pareto_front(TRIALS), diversity_floor=0.95)
    assert selection.trial is not None and selection.trial.number == 1
    assert not selection.cleared_floor
    assert "no candidate trial reaches the diversity floor 0.95" in selection.message


def test_nothing_to_choose() -> None:
    selection = select_candidate([], diversity_floor=0.0)
    assert selection.trial is None and not selection.cleared_floor


def test_trials_table_marks_front_and_choice() -> None:
    frame = trials_table(TRIALS, pareto=[0, 1, 3], chosen=3)
    assert isinstance(frame, pd.DataFrame)
    assert frame.loc[frame["chosen"], "trial"].tolist() == [3]
    assert frame["pareto"].sum() == 3
    assert markdown_table(frame).splitlines()[0].startswith("| trial | state | accuracy |")
