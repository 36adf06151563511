"""The scale benchmark's report helpers: fitted exponents, the throughput ratio and the table (no timing)."""

from __future__ import annotations

import math

import pytest

from benchmarks.scale import exponents, fitted_exponent, size_overrides, table_markdown, throughput_ratio


def _row(users: int, seconds: float, examples_per_s: float) -> dict:
    """A measured size whose every phase took `seconds`."""
    phase = {"time_s": seconds, "cpu_s": seconds / 2, "wall_s": seconds + 1.0, "peak_rss_gib": 0.5}
    train = {**phase, "epoch_time_s": seconds, "examples_per_s": examples_per_s}
    return {
        "users": users,
        "items": users // 10,
        "interactions": users * 30,
        "phases": {"preprocess": phase, "train": train},
    }


def test_fitted_exponent_recovers_a_power_law() -> None:
    """time = 3·n^1.5 has slope 1.5 on log-log axes; a constant has slope 0."""
    sizes = [1e3, 1e4, 1e5, 1e6]
    assert fitted_exponent(sizes, [3.0 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert fitted_exponent(sizes, [7.0] * 4) == pytest.approx(0.0, abs=1e-12)


def test_fitted_exponent_needs_two_sizes() -> None:
    """One size (or non-positive times only) fits nothing."""
    assert math.isnan(fitted_exponent([1e4], [2.0]))
    assert math.isnan(fitted_exponent([1e4, 1e5], [0.0, 0.0]))


def test_exponents_and_ratio_over_rows() -> None:
    """Linear time gives exponent 1 per phase; the ratio is largest-size throughput over smallest's."""
    rows = [_row(100_000, 10.0, 800.0), _row(10_000, 1.0, 1000.0)]
    fitted = exponents(rows)
    assert fitted["preprocess"] == pytest.approx(1.0)
    assert fitted["train"] == pytest.approx(1.0)
    assert math.isnan(fitted["encode"])  # not measured
    assert exponents(rows, "cpu_s")["train"] == pytest.approx(1.0)
    assert throughput_ratio(rows) == pytest.approx(0.8)
    assert math.isnan(throughput_ratio(rows[:1]))


def test_table_lists_each_measured_phase_by_size() -> None:
    """Rows come smallest size first, only for phases that ran, with the training throughput noted."""
    lines = table_markdown([_row(100_000, 10.0, 800.0), _row(10_000, 1.0, 1000.0)]).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2].startswith("| 10,000 | 1,000 | 300,000 | preprocess | 1.0 | 0.5 | 2.0 | 0.50 |")
    assert "1,000 examples/s" in lines[3]
    assert lines[5].startswith("| 100,000 | 10,000 | 3,000,000 | train | 10.0 |")


def test_size_overrides_shape_the_synthetic_set() -> None:
    """A size of U users is U/10 items and 30·U interactions, one epoch, a sampled evaluation."""
    overrides = size_overrides(1_000_000, items_per_user=0.1, interactions_per_user=30, eval_users=10_000)
    assert "data.synthetic.n_items=100000" in overrides
    assert "data.synthetic.n_interactions=30000000" in overrides
    assert "trainer.max_epochs=1" in overrides and "evaluation.max_users=10000" in overrides
