"""Plots (matplotlib, Agg) and the Markdown report of `explorec study`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.simulation.report import _save, _table

if TYPE_CHECKING:
    from explorec.simulation.results import StudyResult

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D")


def _policy_colours(policies: list[str]) -> dict[str, Any]:
    """One tab10 colour per policy."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    return {name: palette(index % 10) for index, name in enumerate(policies)}


def _curve(summary: pd.DataFrame, encoder: str, policy_name: str) -> pd.DataFrame:
    """Mean points of one policy (and greedy_online as rate 0) for one encoder, ordered by rate."""
    rows = summary[summary["encoder"] == encoder]
    anchor = rows[rows["policy"] == "greedy_online"].assign(
        exploration_rate=0.0, deviation=0.0, early_cost=0.0
    )
    points = pd.concat([anchor, rows[rows["policy"].str.split("@").str[0] == policy_name]])
    return points.sort_values("exploration_rate")


def study_plots(result: StudyResult, study: StudyConfig, output_dir: Path) -> dict[str, Path]:
    """Reward vs discovery, outcomes vs cost, and offline accuracy vs diversity, per calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    colours = _policy_colours(study.policies)
    paths: dict[str, Path] = {}
    for calibration, summary in result.summary.groupby("calibration", sort=False):
        figure, axis = plt.subplots(figsize=(9, 6))
        _lines(axis, summary, study, colours, "new_clusters_clicked", "expected_clicks", annotate=True)
        axis.set_xlabel("new clusters clicked per user (discovery)")
        axis.set_ylabel("expected clicks per user over the horizon")
        axis.set_title(f"reward vs discovery per rate, policy and encoder ({calibration})")
        axis.legend(fontsize=7, ncol=2)
        paths[f"reward_vs_discovery_{calibration}"] = _save(
            figure, output_dir / f"reward_vs_discovery_{calibration}.png"
        )
        figure, axes = plt.subplots(2, 2, figsize=(13, 9))
        for row, cost in enumerate(("deviation", "early_cost")):
            for column, outcome in enumerate(("expected_clicks", "new_clusters_clicked")):
                _lines(axes[row, column], summary, study, colours, cost, outcome, annotate=False)
                axes[row, column].set_xlabel(cost)
                axes[row, column].set_ylabel(outcome)
        axes[0, 0].legend(fontsize=6, ncol=2)
        figure.suptitle(
            f"long-term outcomes at equal short-term cost ({calibration}); rate 0 = greedy_online"
        )
        paths[f"equal_cost_{calibration}"] = _save(figure, output_dir / f"equal_cost_{calibration}.png")
        figure, axis = plt.subplots(figsize=(9, 6))
        _lines(axis, summary, study, colours, "offline_ild", "offline_ndcg", annotate=True)
        axis.set_xlabel("first-visit intra-list diversity (text cosine)")
        axis.set_ylabel("first-visit NDCG@K vs hidden positives")
        axis.set_title(f"offline served-slate accuracy vs diversity ({calibration})")
        axis.legend(fontsize=7, ncol=2)
        paths[f"offline_{calibration}"] = _save(figure, output_dir / f"offline_{calibration}.png")
    plt.close("all")
    return paths


def _lines(
    axis: Any,
    summary: pd.DataFrame,
    study: StudyConfig,
    colours: dict[str, Any],
    x: str,
    y: str,
    *,
    annotate: bool,
) -> None:
    """One line per policy and encoder through its rates (greedy_online as rate 0)."""
    for index, encoder in enumerate(study.encoders):
        for name in study.policies:
            points = _curve(summary, encoder, name)
            axis.plot(
                points[x],
                points[y],
                linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                marker=MARKERS[index % len(MARKERS)],
                color=colours[name],
                markersize=4,
                label=f"{name} [{encoder}]",
            )
            if annotate:
                for _, point in points.iloc[1:].iterrows():
                    axis.annotate(f"{point['exploration_rate']:g}", (point[x], point[y]), fontsize=6)


def _fit_line(encoder: str, fit: dict[str, Any], recommender: str) -> str:
    """One bullet on an encoder's recommender."""
    if not fit:
        return f"- `{encoder}`: `{recommender}`\n"
    origin = "read from the cache" if fit["cache_hit"] else f"fitted in {fit['fit_time_s']:.0f} s"
    return (
        f"- `{encoder}`: `{recommender}`, {origin}, {fit['epochs_run']} epochs, "
        f"validation NDCG@10 {fit['val_ndcg_at_10']:.4f} (non-simulated users)\n"
    )


def _gain(row: pd.Series) -> str:
    """A difference with its interval, or 'not reached' when either encoder does not reach the level."""
    if not np.isfinite(row["difference"]):
        return "cost not reached by both"
    return f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def _equal_cost_markdown(frame: pd.DataFrame, axis: str, treatment: str, control: str) -> str:
    """Table: per policy and level, the treatment − control difference in each outcome."""
    rows = frame[frame["axis"] == axis]
    lines = [
        f"| policy | {axis} | clicks {treatment} | clicks {control} | Δ clicks [95% CI] "
        f"| discovery {treatment} | discovery {control} | Δ discovery [95% CI] | Δ hidden recall |",
        "|---|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for (policy, level), group in rows.groupby(["policy", "level"], sort=False):
        by = group.set_index("outcome")
        clicks, discovery, hidden = (
            by.loc["expected_clicks"],
            by.loc["new_clusters_clicked"],
            by.loc["hidden_recall"],
        )
        lines.append(
            f"| {policy} | {level:g} | {clicks[treatment]:.3f} | {clicks[control]:.3f} | {_gain(clicks)} "
            f"| {discovery[treatment]:.3f} | {discovery[control]:.3f} | {_gain(discovery)} "
            f"| {_gain(hidden)} |"
        )
    return "\n".join(lines) + "\n"


def _answer_markdown(result: StudyResult, calibration: str, study: StudyConfig) -> str:
    """The answer paragraph of one calibration."""
    treatment, control = study.encoders
    facts = result.answer["calibrations"][calibration]
    greedy_clicks, greedy_discovery = (
        facts["greedy_online_expected_clicks"],
        facts["greedy_online_new_clusters"],
    )
    parts = [
        f"At zero exploration (greedy_online) the `{treatment}` towers give "
        f"{greedy_clicks[treatment]:.3f} expected clicks per user vs {greedy_clicks[control]:.3f} with "
        f"`{control}`, and {greedy_discovery[treatment]:.3f} vs {greedy_discovery[control]:.3f} new clusters "
        "clicked.\n\n"
    ]
    per_policy = facts["per_policy"]
    if not per_policy:
        return "".join(parts) + "No policy reaches a common δ level with both encoders.\n\n"
    parts.append(
        f"At equal slot deviation δ (mean over the levels both encoders reach), "
        f"`{treatment}` minus `{control}`:\n\n"
        "| policy | δ levels | Δ expected clicks | Δ new clusters clicked | Δ hidden recall |\n"
        "|---|---|---:|---:|---:|\n"
    )
    for policy, gains in sorted(per_policy.items(), key=lambda item: -item[1]["mean_gain_expected_clicks"]):
        levels = ", ".join(f"{level:g}" for level in gains["levels"])
        parts.append(
            f"| {policy} | {levels} | {gains['mean_gain_expected_clicks']:+.3f} "
            f"| {gains['mean_gain_new_clusters_clicked']:+.3f} | {gains['mean_gain_hidden_recall']:+.4f} |\n"
        )
    best = facts["uses_it_best"]
    gains = per_policy[best]
    parts.append(
        f"\n**Answer ({calibration}).** At equal short-term cost the `{treatment}` item tower buys "
        f"{gains['mean_gain_expected_clicks']:+.3f} expected clicks per user and "
        f"{gains['mean_gain_new_clusters_clicked']:+.3f} new clusters clicked for **{best}**, "
        "the policy that uses it best (largest long-term-reward gain at equal δ); per-level intervals are "
        "in the tables below (an interval that spans 0 is no evidence of a difference). The configuration "
        f"with the most expected clicks under `{treatment}` is "
        f"{facts['best_configuration_with_treatment']}.\n\n"
    )
    matched = result.matched_rate[
        (result.matched_rate["calibration"] == calibration)
        & (result.matched_rate["outcome"] == "expected_clicks")
        & (result.matched_rate["policy"].str.split("@").str[0] == best)
    ]
    if len(matched):
        pairs = "; ".join(
            f"{row['policy']} {row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
            for _, row in matched.iterrows()
        )
        parts.append(f"Same policy and rate, `{treatment}` − `{control}` expected clicks: {pairs}.\n\n")
    return "".join(parts)


def study_markdown(result: StudyResult, cfg: SimulateConfig, study: StudyConfig) -> str:
    """The study report: setup, the answer, equal-cost tables, the full grid, matched-rate differences."""
    treatment, control = study.encoders
    info = result.world_info
    parts = [
        f"# Study: does the `{treatment}` item tower change the exploration trade-off? (vs `{control}`)\n\n",
        f"Pool `{info['pool']}` ({info['n_pool_users']} users), {cfg.n_visits} visits × K={cfg.slate_size}, "
        f"R={cfg.n_replications} replications, ground truth {info['ground_truth']} "
        f"(λ={info['ground_truth_l2']:g}), {cfg.n_text_clusters} text clusters; grid: "
        f"{', '.join(study.policies)} × rates {', '.join(f'{rate:g}' for rate in study.exploration_rates)}; "
        f"study runtime {result.runtime_s:.0f} s.\n\n",
        "Recommenders (fitted on non-simulated users + the visible part of simulated users only):\n\n",
    ]
    for encoder in study.encoders:
        parts.append(
            _fit_line(encoder, info["recommender_fit"].get(encoder, {}), info["recommenders"][encoder])
        )
    parts.append(
        "\nCosts: δ = share of slots that differ from the greedy slate of the same scores; early cost = "
        "1 − early-visit CTR / the same encoder's greedy_online early CTR (first quarter of visits). "
        "Outcomes: expected clicks over the horizon (long-term reward), new clusters clicked (clusters of "
        "the text embeddings a user clicks that their visible history lacks), hidden-interest recall. "
        "Equal-cost "
        "values are read off each policy's polyline through its rates (greedy_online = rate 0) per "
        "replication; Δ = paired mean over replications with a 95% t interval (click and policy randomness "
        "in this world and these two fits). Both encoders are measured on the same text clusters; "
        "semantic_cluster and mmr use the text embeddings with either item tower.\n\n"
    )
    for calibration in result.summary["calibration"].unique():
        parts.append(f"\n## Calibration `{calibration}`\n\n")
        parts.append(_answer_markdown(result, calibration, study))
        frame = result.equal_cost[result.equal_cost["calibration"] == calibration]
        for axis in ("deviation", "early_cost"):
            parts.append(f"\n### Equal cost: {axis}\n\n")
            parts.append(_equal_cost_markdown(frame, axis, treatment, control))
        summary = result.summary[result.summary["calibration"] == calibration]
        parts.append("\n### Every configuration (means over replications)\n\n")
        parts.append(
            _table(summary.reset_index(drop=True), [c for c in SUMMARY_COLUMNS_REPORT if c in summary])
        )
        matched = result.matched_rate[
            (result.matched_rate["calibration"] == calibration)
            & (result.matched_rate["outcome"] == "expected_clicks")
        ]
        parts.append(f"\n### Same policy and rate: `{treatment}` − `{control}` expected clicks\n\n")
        parts.append(
            _table(
                matched.reset_index(drop=True),
                ["policy", treatment, control, "difference", "ci_low", "ci_high"],
            )
        )
    return "".join(parts)


SUMMARY_COLUMNS_REPORT = [
    "encoder",
    "policy",
    "expected_clicks",
    "lift_vs_greedy_online",
    "deviation",
    "early_cost",
    "new_clusters_clicked",
    "discovery_ratio_vs_greedy_online",
    "hidden_recall",
    "offline_ndcg",
    "offline_ild",
]
