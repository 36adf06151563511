"""Plots (matplotlib, Agg) and the Markdown summary of a simulation result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from explorec.config.simulation import SimulateConfig
from explorec.simulation.runner import BASELINE_LABELS
from explorec.tracking import plots

LIFT_CONTROL, LIFT_OUTCOME = "greedy_online", "expected_clicks"
"""The lift interval chart: each policy's expected clicks minus greedy_online's, 95% paired interval."""

if TYPE_CHECKING:
    from explorec.simulation.results import SimulationResult

SUMMARY_COLUMNS = (
    "expected_clicks",
    "lift_vs_greedy_online",
    "lift_vs_static",
    "regret",
    "ctr_early",
    "ctr_late",
    "early_cost_vs_greedy_online",
    "break_even_visit",
    "new_clusters_clicked",
    "discovery_ratio_vs_greedy_online",
    "hidden_recall",
    "coverage",
    "gini",
    "novelty",
    "ild",
    "deviation",
)


FIRST_CLICK_COLUMNS = ("first_new_cluster_click_visits",)
CHURN_COLUMNS = (
    "new_item_exposure_share",
    "new_item_expected_clicks",
    "new_item_clicks",
    "new_items_clicked_share",
    "new_item_first_click_visits",
)
"""The churn world's outcomes, in their own table (they do not exist in the static world)."""


def _band_plot(axis, curves: pd.DataFrame, column: str, title: str) -> None:
    """Mean curve per policy with a min–max band across replications."""
    for policy, frame in curves.groupby("policy", sort=False):
        stats = frame.groupby("visit")[column].agg(["mean", "min", "max"])
        style = "--" if policy in BASELINE_LABELS else "-"
        axis.plot(stats.index, stats["mean"], style, label=policy)
        axis.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
    axis.set_title(title)
    axis.set_xlabel("visit")


def write_plots(result: SimulationResult, output_dir: Path) -> dict[str, Path]:
    """Write the curve, early/late CTR and trade-off plots per calibration; return their paths by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for calibration, curves in result.curves.groupby("calibration", sort=False):
        figure, axes = plt.subplots(1, 2, figsize=(13, 5))
        _band_plot(
            axes[0], curves, "cumulative_expected_clicks", f"cumulative expected clicks ({calibration})"
        )
        _band_plot(axes[1], curves, "cumulative_regret", f"cumulative regret vs oracle ({calibration})")
        axes[1].legend(fontsize=7, loc="upper left")
        paths[f"curves_{calibration}"] = _save(figure, output_dir / f"curves_{calibration}.png")
    summary = result.summary
    for calibration, frame in summary.groupby("calibration", sort=False):
        figure, axis = plt.subplots(figsize=(10, 4.5))
        positions = np.arange(len(frame))
        axis.bar(positions - 0.2, frame["ctr_early"], 0.4, label="early (first quarter)")
        axis.bar(positions + 0.2, frame["ctr_late"], 0.4, label="late (last quarter)")
        axis.set_xticks(positions, frame["policy"], rotation=45, ha="right", fontsize=8)
        axis.set_ylabel("expected clicks per slot")
        axis.set_title(f"early vs late CTR ({calibration})")
        axis.legend()
        paths[f"ctr_{calibration}"] = _save(figure, output_dir / f"ctr_early_late_{calibration}.png")
        paths[f"tradeoff_{calibration}"] = plots.tradeoff(
            frame,
            output_dir / f"tradeoff_{calibration}.png",
            calibration=calibration,
            not_exploring=BASELINE_LABELS,
        )
    paths["lift_intervals"] = plots.lift_intervals(
        lift_rows(result.comparisons),
        output_dir / "lift_intervals.png",
        control=LIFT_CONTROL,
        outcome=LIFT_OUTCOME,
    )
    return paths


def lift_rows(comparisons: pd.DataFrame) -> list[dict]:
    """Return each exploring policy's expected-click lift over greedy_online (the baselines are in the
    tables: static and random would set the chart's scale and squash the policies' intervals)."""
    if comparisons.empty:
        return []
    chosen = comparisons[
        (comparisons["metric"] == LIFT_OUTCOME)
        & (comparisons["control"] == LIFT_CONTROL)
        & ~comparisons["policy"].isin(BASELINE_LABELS)
    ]
    return chosen.to_dict("records")


def _save(figure, path: Path) -> Path:
    """Save and close a figure."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A Markdown table of the given columns, floats with 4 significant digits."""
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    lines = []
    for _, row in frame[columns].iterrows():
        cells = [f"{value:.4g}" if isinstance(value, float) else str(value) for value in row]
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines) + "\n"


def markdown_summary(result: SimulationResult, cfg: SimulateConfig) -> str:
    """Headline, per-calibration tables of outcomes and paired comparisons, and the OPE cross-check."""
    info = result.world_info
    parts = [
        "# Interactive simulation\n\n",
        f"Pool `{info['pool']}` ({info['n_pool_users']} users), {cfg.n_visits} visits × K={cfg.slate_size}, "
        f"R={cfg.n_replications} replications, ground truth {info['ground_truth']} "
        f"(λ={info['ground_truth_l2']:g}), "
        f"recommender `{info['recommender']}`{_fit_note(info)}; runtime {result.runtime_s:.1f} s.\n\n",
        "Expected clicks are Σ θ_k·p over served slots per user over the horizon (the primary outcome); "
        "intervals are paired 95% t intervals across replications (common random numbers), p-values "
        "Holm-corrected per calibration and metric. They reflect click and policy randomness in this one "
        "world.\n\n",
    ]
    for calibration, frame in result.summary.groupby("calibration", sort=False):
        facts = info["calibrations"][calibration]
        parts.append(
            f"\n## Calibration `{calibration}`: a={facts['slope_a']:.3f}, b={facts['intercept_b']:.3f}, "
            f"mean p={facts['mean_p']:.4f}, top-10 mean p={facts['top10_mean_p']:.3f}\n\n"
        )
        parts.append(_headline(result, calibration))
        parts.append(_table(frame.reset_index(drop=True), ["policy", *SUMMARY_COLUMNS]))
        comparisons = result.comparisons
        primary = comparisons[
            (comparisons["calibration"] == calibration) & (comparisons["metric"] == "expected_clicks")
        ]
        parts.append("\nPaired differences in expected clicks:\n\n")
        parts.append(_table(primary, ["policy", "control", "mean_difference", "ci_low", "ci_high", "p_holm"]))
        parts.append(_first_clicks(result, calibration, frame))
    parts.append(_clusters(info))
    if len(result.ope):
        parts.append("\n## Off-policy cross-check (visit 1, prefix propensities, reward = click)\n\n")
        parts.append(
            _table(
                result.ope,
                [
                    "calibration",
                    "logging_policy",
                    "target",
                    "estimator",
                    "estimate",
                    "ci_low",
                    "ci_high",
                    "simulated_value",
                    "covered",
                ],
            )
        )
    return "".join(parts)


def _first_clicks(result: SimulationResult, calibration: str, frame: pd.DataFrame) -> str:
    """Visits until first clicks (and in the churn world the new items' outcomes, with paired differences)."""
    churn = "new_item_exposure_share" in frame
    columns = ["policy", *FIRST_CLICK_COLUMNS, *(CHURN_COLUMNS if churn else ())]
    text = (
        "\nVisits until a first click (restricted means: never clicked counts as the horizon left + 1)"
        + (" and the new items' outcomes:\n\n" if churn else ":\n\n")
        + _table(frame.reset_index(drop=True), columns)
    )
    if churn:
        comparisons = result.comparisons
        rows = comparisons[
            (comparisons["calibration"] == calibration)
            & (comparisons["metric"] == "new_item_expected_clicks")
            & (comparisons["control"] == "greedy_online")
        ]
        text += "\nPaired differences in expected clicks on new items vs greedy_online:\n\n"
        text += _table(rows, ["policy", "mean_difference", "ci_low", "ci_high", "p_holm"])
    return text


def _clusters(info: dict) -> str:
    """The text clusters named by their most central titles, and the likeliest next cluster of each."""
    names = info.get("text_clusters")
    if not names:
        return ""
    transitions = info.get("cluster_transitions") or []
    lines = ["\n## Text clusters (named by their most central titles)\n\n", "| cluster | name | next |\n"]
    lines.append("|---|---|---|\n")
    for cluster, name in enumerate(names):
        following = transitions[cluster] if cluster < len(transitions) else None
        after = f"{following['to']} (P={following['probability']:.2f})" if following else ""
        lines.append(f"| {cluster} | {name} | {after} |\n")
    return "".join(lines)


def _fit_note(info: dict) -> str:
    """How the two-tower recommender was obtained (empty for the stand-in)."""
    fit = info.get("recommender_fit") or {}
    if not fit:
        return ""
    origin = "read from the cache" if fit["cache_hit"] else f"fitted in {fit['fit_time_s']:.0f} s"
    return (
        f" (fitted on non-simulated users + the visible part of simulated users only, {origin}; "
        f"{fit['epochs_run']} epochs, validation NDCG@10 {fit['val_ndcg_at_10']:.4f})"
    )


def best_exploring_policy(comparisons: pd.DataFrame, calibration: str) -> str | None:
    """The exploring policy with the highest lower 95% bound on expected clicks vs greedy_online."""
    rows = comparisons[
        (comparisons["calibration"] == calibration)
        & (comparisons["metric"] == "expected_clicks")
        & (comparisons["control"] == "greedy_online")
        & ~comparisons["policy"].isin(BASELINE_LABELS)
    ]
    return None if rows.empty else str(rows.sort_values("ci_low", ascending=False)["policy"].iloc[0])


def _headline(result: SimulationResult, calibration: str) -> str:
    """One paragraph on the best exploring policy vs greedy_online (selected on this pool; say so)."""
    best = best_exploring_policy(result.comparisons, calibration)
    if best is None:
        return ""
    row = result.comparisons[
        (result.comparisons["calibration"] == calibration)
        & (result.comparisons["metric"] == "expected_clicks")
        & (result.comparisons["control"] == "greedy_online")
        & (result.comparisons["policy"] == best)
    ].iloc[0]
    summary = result.summary[
        (result.summary["calibration"] == calibration) & (result.summary["policy"] == best)
    ].iloc[0]
    return (
        f"\nHighest lower bound vs greedy_online on this pool: **{best}**: lift {row['mean_difference']:.3f} "
        f"expected clicks per user [{row['ci_low']:.3f}, {row['ci_high']:.3f}] (Holm p={row['p_holm']:.3g}); "
        f"new-cluster discovery {summary['discovery_ratio_vs_greedy_online']:.2f}× greedy_online; "
        f"early-visit cost {summary['early_cost_vs_greedy_online']:.4f} expected clicks per slot; "
        f"break-even visit {summary['break_even_visit']:g}.\n\n"
    )
