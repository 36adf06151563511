"""Plots (matplotlib, Agg) and the Markdown report of `explorec study`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.simulation.report import _save, _table
from explorec.simulation.study_cells import GOAL_RATIO, GOAL_WORLD, POOLED, reported_cells, rung_pairs

if TYPE_CHECKING:
    from explorec.simulation.results import StudyResult

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")
OUTCOME_NAMES = {
    "expected_clicks": "expected clicks",
    "new_clusters_clicked": "discovery (new clusters clicked)",
    "hidden_recall": "hidden recall",
    "new_item_expected_clicks": "expected clicks on new items",
}


def _palette(names: list[str]) -> dict[str, Any]:
    """One tab10 colour per name."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    return {name: palette(index % 10) for index, name in enumerate(names)}


def _curve(summary: pd.DataFrame, encoder: str, policy_name: str) -> pd.DataFrame:
    """Mean points of one policy (and greedy_online as rate 0) for one encoder, ordered by rate."""
    rows = summary[summary["encoder"] == encoder]
    anchor = rows[rows["policy"] == "greedy_online"].assign(
        exploration_rate=0.0, deviation=0.0, early_cost=0.0
    )
    points = pd.concat([anchor, rows[rows["policy"].str.split("@").str[0] == policy_name]])
    return points.sort_values("exploration_rate")


def pareto_frontier(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats on both x and y (larger is better), ordered by x."""
    ordered = points.sort_values([x, y], ascending=[False, False], kind="stable")
    kept, best_y = [], -np.inf
    for index, row in ordered.iterrows():
        if row[y] > best_y:
            kept.append(index)
            best_y = row[y]
    return points.loc[kept].sort_values(x)


def _grid(study: StudyConfig, worlds: list[str]) -> tuple[Any, Any]:
    """A worlds × ground truths grid of axes."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        len(worlds),
        len(study.ground_truths),
        figsize=(5.2 * len(study.ground_truths), 4.2 * len(worlds)),
        squeeze=False,
    )
    return figure, axes


def _frontier_plot(summary: pd.DataFrame, study: StudyConfig, calibration: str, path: Path) -> Path:
    """Clicks vs discovery: every configuration and each rung's frontier, one colour per rung."""
    worlds = list(dict.fromkeys(summary["world"]))
    colours = _palette(study.encoders)
    figure, axes = _grid(study, worlds)
    for row, world in enumerate(worlds):
        for column, truth in enumerate(study.ground_truths):
            axis = axes[row, column]
            cell = summary[(summary["world"] == world) & (summary["ground_truth"] == truth)]
            for encoder in study.encoders:
                points = cell[(cell["encoder"] == encoder) & (cell["policy"] != "oracle")]
                axis.scatter(
                    points["new_clusters_clicked"],
                    points["expected_clicks"],
                    s=10,
                    alpha=0.45,
                    color=colours[encoder],
                )
                frontier = pareto_frontier(points, "new_clusters_clicked", "expected_clicks")
                axis.plot(
                    frontier["new_clusters_clicked"],
                    frontier["expected_clicks"],
                    color=colours[encoder],
                    label=f"{encoder} frontier",
                )
                greedy = points[points["policy"] == "greedy_online"]
                axis.scatter(
                    greedy["new_clusters_clicked"],
                    greedy["expected_clicks"],
                    marker="*",
                    s=120,
                    color=colours[encoder],
                    edgecolor="black",
                )
            oracle = cell[cell["policy"] == "oracle"].head(1)
            axis.scatter(
                oracle["new_clusters_clicked"],
                oracle["expected_clicks"],
                marker="X",
                s=80,
                color="black",
                label="oracle",
            )
            axis.set_title(f"{world} world, {truth} truth", fontsize=9)
            axis.set_xlabel("new clusters clicked per user")
            axis.set_ylabel("expected clicks per user")
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"clicks vs discovery per rung (★ greedy_online), calibration {calibration}")
    return _save(figure, path)


def _first_click_plot(result: StudyResult, study: StudyConfig, calibration: str, path: Path) -> Path | None:
    """Churn world: share of new items clicked at least once by each visit, per rung."""
    curves = result.curves
    if "new_items_clicked_share" not in curves:
        return None
    curves = curves[(curves["world"] == GOAL_WORLD) & (curves["calibration"] == calibration)]
    if curves.empty:
        return None
    import matplotlib.pyplot as plt

    goal = result.answer.get("goal") or {}
    chosen = (goal.get("chosen") or {}).get("policy")
    policies = ["greedy_online", *([chosen] if chosen else [])]
    colours = _palette(study.encoders)
    figure, axes = plt.subplots(
        1, len(study.ground_truths), figsize=(5.2 * len(study.ground_truths), 4.2), squeeze=False
    )
    for column, truth in enumerate(study.ground_truths):
        axis = axes[0, column]
        cell = curves[curves["ground_truth"] == truth]
        for encoder in study.encoders:
            for style, policy in zip(LINE_STYLES, policies, strict=False):
                rows = cell[(cell["encoder"] == encoder) & (cell["policy"] == policy)]
                mean = rows.groupby("visit")["new_items_clicked_share"].mean()
                axis.plot(
                    mean.index,
                    mean.to_numpy(),
                    linestyle=style,
                    color=colours[encoder],
                    label=f"{policy} [{encoder}]",
                )
        axis.set_title(f"{truth} truth", fontsize=9)
        axis.set_xlabel("visit")
        axis.set_ylabel("share of new items clicked so far")
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"new items' first clicks per rung (churn world, calibration {calibration})")
    return _save(figure, path)


def _equal_cost_plot(summary: pd.DataFrame, study: StudyConfig, title: str, path: Path) -> Path:
    """Outcomes against both costs: one line per policy and rung through its rates."""
    import matplotlib.pyplot as plt

    colours = _palette(study.policies)
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    for row, cost in enumerate(("deviation", "early_cost")):
        for column, outcome in enumerate(("expected_clicks", "new_clusters_clicked")):
            axis = axes[row, column]
            for index, encoder in enumerate(study.encoders):
                for name in study.policies:
                    points = _curve(summary, encoder, name)
                    axis.plot(
                        points[cost],
                        points[outcome],
                        linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                        marker=MARKERS[index % len(MARKERS)],
                        color=colours[name],
                        markersize=3,
                        label=f"{name} [{encoder}]",
                    )
            axis.set_xlabel(cost)
            axis.set_ylabel(outcome)
    axes[0, 0].legend(fontsize=5, ncol=2)
    figure.suptitle(f"long-term outcomes at equal short-term cost ({title}); rate 0 = greedy_online")
    return _save(figure, path)


def study_plots(result: StudyResult, study: StudyConfig, output_dir: Path) -> dict[str, Path]:
    """The frontier per rung, new-item first-click curves, and equal-cost curves per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for calibration, summary in result.summary.groupby("calibration", sort=False):
        paths[f"frontier_{calibration}"] = _frontier_plot(
            summary, study, calibration, output_dir / f"frontier_{calibration}.png"
        )
        first_clicks = _first_click_plot(
            result, study, calibration, output_dir / f"new_item_first_clicks_{calibration}.png"
        )
        if first_clicks is not None:
            paths[f"new_item_first_clicks_{calibration}"] = first_clicks
        for (world, truth), cell in summary.groupby(["world", "ground_truth"], sort=False):
            name = f"equal_cost_{world}_{truth}_{calibration}"
            paths[name] = _equal_cost_plot(
                cell, study, f"{world} world, {truth} truth, {calibration}", output_dir / f"{name}.png"
            )
    plt.close("all")
    return paths


def _interval(row: pd.Series | dict[str, Any]) -> str:
    """A difference with its interval, or a dash when it could not be read."""
    if not np.isfinite(row["difference"]):
        return "—"
    return f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"


def _fit_lines(result: StudyResult, study: StudyConfig) -> str:
    """One bullet per rung and world on its recommender."""
    lines = []
    seen = set()
    for cell in reported_cells(study):
        if (cell.encoder, cell.world) in seen:
            continue
        seen.add((cell.encoder, cell.world))
        info = result.world_info["cells"][cell.key]
        fit = info.get("recommender_fit") or {}
        if not fit:
            lines.append(f"- `{cell.encoder}`, {cell.world} world: `{info['recommender']}`\n")
            continue
        origin = "read from the cache" if fit["cache_hit"] else f"fitted in {fit['fit_time_s']:.0f} s"
        lines.append(
            f"- `{cell.encoder}`, {cell.world} world: `{info['recommender']}`, {origin}, "
            f"{fit['epochs_run']} epochs, validation NDCG@10 {fit['val_ndcg_at_10']:.4f}\n"
        )
    return "".join(lines)


def _truth_lines(result: StudyResult, study: StudyConfig) -> str:
    """The ground truths' fitted regularisation and holdout recall."""
    parts = []
    for truth in study.ground_truths:
        cell = next(c for c in reported_cells(study) if c.ground_truth == truth)
        info = result.world_info["cells"][cell.key]
        l2 = info["ground_truth_l2"]
        recall = info["ground_truth_holdout_recall@20"]
        chosen = recall.get(l2, recall.get(str(l2))) if isinstance(recall, dict) else recall
        parts.append(f"`{truth}` (λ={l2:g}, holdout Recall@20 {float(chosen):.3f})")
    return ", ".join(parts)


def rung_markdown(rungs: pd.DataFrame) -> str:
    """The one adjacent-rung table: every world, ground truth and pair, pooled equal-δ row and baselines."""
    outcomes = [o for o in OUTCOME_NAMES if o in set(rungs["outcome"]) and o != "hidden_recall"]
    header = "| world | ground truth | rungs | compared at | " + " | ".join(
        f"Δ {OUTCOME_NAMES[o]} [95% CI]" for o in outcomes
    )
    lines = [header + " |", "|---|---|---|---|" + "---|" * len(outcomes)]
    keys = ["world", "ground_truth", "calibration", "lower", "upper", "comparison"]
    for (world, truth, calibration, lower, upper, comparison), frame in rungs.groupby(keys, sort=False):
        by = frame.set_index("outcome")
        cells = [_interval(by.loc[o]) if o in by.index else "—" for o in outcomes]
        where = "equal δ (all exploring policies)" if comparison == POOLED else comparison
        label = f"{truth}" + (f" ({calibration})" if calibration != "main" else "")
        lines.append(f"| {world} | {label} | {lower} → {upper} | {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _world_answer(result: StudyResult, study: StudyConfig, world: str) -> str:
    """One answer paragraph per world: each pair's equal-δ differences under every truth, and the claim."""
    pooled = result.rungs[(result.rungs["comparison"] == POOLED) & (result.rungs["world"] == world)]
    agreement = result.agreement[result.agreement["world"] == world]
    sentences = []
    for lower, upper in rung_pairs(study):
        pair = pooled[(pooled["lower"] == lower) & (pooled["upper"] == upper)]
        for outcome in [o for o in OUTCOME_NAMES if o in set(pair["outcome"]) and o != "hidden_recall"]:
            rows = pair[pair["outcome"] == outcome]
            readings = "; ".join(f"{row['ground_truth']} {_interval(row)}" for _, row in rows.iterrows())
            claims = agreement[
                (agreement["lower"] == lower)
                & (agreement["upper"] == upper)
                & (agreement["outcome"] == outcome)
            ]["claim"]
            claim = ", ".join(sorted(set(claims))) if len(claims) else "no claim"
            verdict = {
                "higher": f"`{upper}` gives more under every ground truth",
                "lower": f"`{upper}` gives less under every ground truth",
            }.get(claim, "no claim (the ground truths do not all agree with intervals excluding zero)")
            sentences.append(
                f"- `{lower}` → `{upper}`, {OUTCOME_NAMES[outcome]} at equal δ: {readings} — **{verdict}**.\n"
            )
    return (
        f"\n## Answer: {world} world\n\n"
        "Each rung minus the rung below, at equal slot deviation (per replication the mean over every "
        "exploring policy and δ level both rungs reach; 95% paired intervals):\n\n" + "".join(sentences)
    )


def _goal_markdown(result: StudyResult) -> str:
    """The churn-world goal: chosen on the selection pool, measured on the reported pool."""
    goal = result.answer.get("goal")
    if goal is None:
        return ""
    chosen = goal.get("chosen")
    if chosen is None:
        return "\n## Goal (churn world)\n\nNot checked: no selection pool or no text rung.\n"
    parts = [
        "\n## Goal (churn world)\n\n",
        f"The best language-model-aware configuration, chosen on the `{chosen['pool']}` pool "
        f"({chosen['ground_truth']} truth, calibration {chosen['calibration']}; most expected clicks among "
        f"every text rung's exploring configurations): **{chosen['policy']} with `{chosen['encoder']}`**. "
        f"On the reported pool it must beat greedy-online (interval above zero) and give ≥ {GOAL_RATIO:g}× "
        "the expected new-item clicks of the best `none` policy read at the same slot deviation:\n\n",
        "| ground truth | calibration | lift vs greedy_online [95% CI] | δ | new-item clicks | best `none` "
        "policy at that δ | its new-item clicks | ratio | difference [95% CI] | met |\n",
        "|---|---|---|---:|---:|---|---:|---:|---|---|\n",
    ]
    for row in goal["per_ground_truth"]:
        low, high = row["lift_ci"]
        d_low, d_high = row["new_item_difference_ci"]
        met = "yes" if row["beats_greedy"] and row["ratio_met"] else "no"
        parts.append(
            f"| {row['ground_truth']} | {row['calibration']} | {row['lift_vs_greedy_online']:+.3f} "
            f"[{low:+.3f}, {high:+.3f}] | {row['deviation']:.3f} | {row['new_item_expected_clicks']:.3f} | "
            f"{row['none_policy']} | {row['none_new_item_expected_clicks']:.3f} | "
            f"{row['new_item_ratio']:.2f} | "
            f"[{d_low:+.3f}, {d_high:+.3f}] | {met} |\n"
        )
    parts.append(f"\n**Goal met under every ground truth: {'yes' if goal['met'] else 'no'}.**\n")
    return "".join(parts)


def _equal_cost_markdown(frame: pd.DataFrame, axis: str, lower: str, upper: str) -> str:
    """Table: per policy and level, upper − lower in each outcome."""
    rows = frame[(frame["axis"] == axis) & (frame["lower"] == lower) & (frame["upper"] == upper)]
    outcomes = [o for o in OUTCOME_NAMES if o in set(rows["outcome"])]
    lines = [
        f"| policy | {axis} | clicks {lower} | clicks {upper} | "
        + " | ".join(f"Δ {OUTCOME_NAMES[o]}" for o in outcomes)
        + " |",
        "|---|---:|---:|---:|" + "---|" * len(outcomes),
    ]
    for (policy, level), group in rows.groupby(["policy", "level"], sort=False):
        by = group.set_index("outcome")
        clicks = by.loc["expected_clicks"]
        lines.append(
            f"| {policy} | {level:g} | {clicks['lower_value']:.3f} | {clicks['upper_value']:.3f} | "
            + " | ".join(_interval(by.loc[o]) for o in outcomes)
            + " |"
        )
    return "\n".join(lines) + "\n"


def study_markdown(result: StudyResult, cfg: SimulateConfig, study: StudyConfig) -> str:
    """The study report: setup, goal, one answer per world, the rung table, then every cell's tables."""
    info = result.world_info
    ladder = " → ".join(f"`{encoder}`" for encoder in study.encoders)
    parts = [
        f"# Study: the encoder ladder {ladder} and the exploration trade-off\n\n",
        f"Pool `{study.pool}` ({info['n_pool_users']} users), {cfg.n_visits} visits × K={cfg.slate_size}, "
        f"R={cfg.n_replications} replications, worlds {', '.join(study.worlds)}, ground truths "
        f"{_truth_lines(result, study)}; {cfg.n_text_clusters} text clusters; grid: "
        f"{', '.join(study.policies)} × rates {', '.join(f'{rate:g}' for rate in study.exploration_rates)}; "
        f"study runtime {result.runtime_s:.0f} s.\n\n",
        "Recommenders (fitted on non-simulated users + the visible part of simulated users only; the churn "
        "world's new items withheld):\n\n",
        _fit_lines(result, study),
        "\nCosts: δ = share of slots that differ from the greedy slate of the same scores; early cost = "
        "1 − early-visit CTR / the same rung's greedy_online early CTR (first quarter of visits). Outcomes: "
        "expected clicks over the horizon, discovery = new clusters clicked (clusters of the text embeddings "
        "a user clicks that their visible history lacks), discovery relative to the oracle's, hidden "
        "interest recall, and in the churn world the new items' exposure share, expected and realised "
        "clicks, share ever clicked and visits to their first click. Every rung is measured on the same text "
        "clusters. "
        "Intervals: paired 95% t intervals over replications (click and policy randomness in one world and "
        "these fits), not adjusted across the table.\n",
        _goal_markdown(result),
    ]
    for world in study.worlds:
        parts.append(_world_answer(result, study, world))
    parts.append("\n## Adjacent rungs, every world and ground truth\n\n")
    parts.append(rung_markdown(result.rungs))
    columns = [c for c in SUMMARY_COLUMNS_REPORT if c in result.summary]
    for (world, truth, calibration), summary in result.summary.groupby(
        ["world", "ground_truth", "calibration"], sort=False
    ):
        parts.append(f"\n## Cell: {world} world, {truth} truth, calibration `{calibration}`\n\n")
        parts.append("### Every configuration (means over replications)\n\n")
        cell_columns = [c for c in columns if summary[c].notna().any()]
        parts.append(_table(summary.reset_index(drop=True), cell_columns))
        frame = result.equal_cost[
            (result.equal_cost["world"] == world)
            & (result.equal_cost["ground_truth"] == truth)
            & (result.equal_cost["calibration"] == calibration)
        ]
        for lower, upper in rung_pairs(study):
            for axis in ("deviation", "early_cost"):
                parts.append(f"\n### `{lower}` → `{upper}` at equal {axis}\n\n")
                parts.append(_equal_cost_markdown(frame, axis, lower, upper))
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
    "discovery_ratio_vs_oracle",
    "hidden_recall",
    "new_item_exposure_share",
    "new_item_expected_clicks",
    "new_item_first_click_visits",
    "offline_ndcg",
    "offline_ild",
]
