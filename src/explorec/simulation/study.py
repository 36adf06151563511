"""`explorec study`: encoder ladder × policy × rate × world × ground truth through the simulator.

A study is a set of cells: one simulation per (world, ground truth, encoder) on the reported pool, all of a
world's cells on the same pools, click models, frozen noise, click uniforms and text clusters, each with
that encoder's two-tower recommender (fitted once per world; the ground truth does not enter the towers).
Each configuration yields long-run outcomes (expected clicks over the horizon, new-cluster discovery,
hidden-interest recall, and in the churn world clicks on new items), its short-term cost (slot deviation δ
vs greedy; early-visit CTR) and its offline served-slate metrics.

Equal-cost comparison: for each policy, replication and encoder the points (cost, outcome) of its rates,
plus greedy_online (every policy at rate 0, cost 0), are joined by straight lines in order of cost and read
at fixed cost levels (no extrapolation beyond the largest cost reached). Each rung of the ladder minus the
rung below it at the same level, paired by replication (common random numbers), gives a mean and a 95%
paired t interval. The intervals reflect click and policy randomness in one world and these fits, not refits.

The churn-world goal picks its "best language-model-aware policy" on `study.selection_pool` (never on the
reported pool) and then measures it on the reported pool under every ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.evaluation.statistics import paired_difference
from explorec.simulation.environment import SimulationWorld
from explorec.simulation.recommender import RecommenderOutputs
from explorec.simulation.results import StudyResult
from explorec.simulation.runner import BASELINE_LABELS
from explorec.simulation.study_cells import (
    CELL_COLUMNS,
    GOAL_RATIO,
    GOAL_WORLD,
    POOLED,
    TEXT_FREE_ENCODER,
    StudyCell,
    reported_cells,
    rung_pairs,
    selection_cells,
    study_cells,
)

if TYPE_CHECKING:
    from explorec.simulation.results import SimulationResult
    from explorec.simulation.simulate import SimulationPlan, UnitResult

OUTCOMES = ("expected_clicks", "new_clusters_clicked", "hidden_recall")
CHURN_OUTCOMES = ("new_item_expected_clicks",)


def study_simulate_config(
    simulate: SimulateConfig, study: StudyConfig, cell: StudyCell | None = None
) -> SimulateConfig:
    """The simulator configuration of the study (of one cell): its grid, calibrations, R, pool; no OPE."""
    calibrations = [
        c for c in simulate.calibrations if not study.calibrations or c.name in study.calibrations
    ]
    if not calibrations:
        raise ValueError(f"study.calibrations {study.calibrations} match no simulate.calibrations")
    settings = replace(
        simulate,
        policy_rates={name: [float(rate) for rate in study.exploration_rates] for name in study.policies},
        calibrations=calibrations,
        n_replications=study.n_replications,
        pool=study.pool,
        ope_logging_policy="",
        ope_target_policies=[],
    )
    if cell is None:
        return settings
    return replace(settings, world=cell.world, ground_truth=cell.ground_truth, pool=cell.pool)


def with_early_cost(per_replication: pd.DataFrame) -> pd.DataFrame:
    """Add `early_cost` = 1 − early CTR / greedy_online's (same cell, calibration, replication)."""
    keys = [*CELL_COLUMNS, "calibration", "replication"]
    greedy = per_replication.loc[per_replication["policy"] == "greedy_online", [*keys, "ctr_early"]]
    merged = per_replication.merge(greedy.rename(columns={"ctr_early": "_greedy"}), on=keys, how="left")
    return per_replication.assign(
        early_cost=1.0 - merged["ctr_early"].to_numpy() / merged["_greedy"].to_numpy()
    )


def cost_curve(points: pd.DataFrame, *, axis: str, outcome: str, levels: np.ndarray) -> np.ndarray:
    """Outcome read off the cost-ordered polyline through `points` at `levels` (NaN outside its range)."""
    ordered = points.sort_values([axis, "exploration_rate"], kind="stable")
    x, y = ordered[axis].to_numpy(np.float64), ordered[outcome].to_numpy(np.float64)
    return np.interp(levels, x, y, left=np.nan, right=np.nan)


def _policy_points(frame: pd.DataFrame, policy_name: str) -> pd.DataFrame:
    """Rows of one policy's rates plus greedy_online (its rate 0, cost 0 on both axes)."""
    anchor = frame[frame["policy"] == "greedy_online"].assign(
        exploration_rate=0.0, deviation=0.0, early_cost=0.0
    )
    return pd.concat([anchor, frame[frame["policy_name"] == policy_name]], ignore_index=True)


def _outcomes(frame: pd.DataFrame) -> tuple[str, ...]:
    """The outcomes compared in a cell's rows (new-item clicks only where the world has new items)."""
    churn = tuple(c for c in CHURN_OUTCOMES if c in frame and frame[c].notna().any())
    return OUTCOMES + churn


def policy_curves(
    frame: pd.DataFrame, *, encoder: str, policy_name: str, axis: str, outcome: str, levels: np.ndarray
) -> np.ndarray:
    """(R, levels) outcome of one policy of one encoder read at the cost levels, per replication."""
    rows = frame[frame["encoder"] == encoder]
    return np.stack(
        [
            cost_curve(
                _policy_points(rows[rows["replication"] == replication], policy_name),
                axis=axis,
                outcome=outcome,
                levels=levels,
            )
            for replication in sorted(frame["replication"].unique())
        ]
    )


def _groups(per_replication: pd.DataFrame) -> Any:
    """The rows of each world × ground truth × calibration."""
    return per_replication.groupby(["world", "ground_truth", "calibration"], sort=False)


def _difference_row(upper: np.ndarray, lower: np.ndarray) -> dict[str, float]:
    """Means, paired difference and 95% interval (NaN where either side is missing)."""
    row = {
        "upper_value": float(np.mean(upper)),
        "lower_value": float(np.mean(lower)),
        "difference": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "p_value": np.nan,
    }
    if np.isfinite(upper).all() and np.isfinite(lower).all():
        difference = paired_difference(treatment=upper, control=lower)
        row.update(
            difference=difference.mean,
            ci_low=difference.ci_low,
            ci_high=difference.ci_high,
            p_value=difference.p_value,
        )
    return row


def equal_cost_table(per_replication: pd.DataFrame, study: StudyConfig) -> pd.DataFrame:
    """Each rung minus the one below at equal cost: cell × calibration × axis × level × policy × outcome."""
    rows = []
    for (world, truth, calibration), frame in _groups(per_replication):
        outcomes = _outcomes(frame)
        for axis, levels in (("deviation", study.deviation_levels), ("early_cost", study.early_cost_levels)):
            levels_array = np.asarray(levels, np.float64)
            for policy_name in study.policies:
                curves = {
                    (encoder, outcome): policy_curves(
                        frame,
                        encoder=encoder,
                        policy_name=policy_name,
                        axis=axis,
                        outcome=outcome,
                        levels=levels_array,
                    )
                    for encoder in study.encoders
                    for outcome in outcomes
                }
                for lower, upper in rung_pairs(study):
                    for index, level in enumerate(levels_array):
                        for outcome in outcomes:
                            rows.append(
                                {
                                    **_pair_keys(world, truth, calibration, lower, upper),
                                    "axis": axis,
                                    "level": float(level),
                                    "policy": policy_name,
                                    "outcome": outcome,
                                    **_difference_row(
                                        curves[(upper, outcome)][:, index], curves[(lower, outcome)][:, index]
                                    ),
                                }
                            )
    return pd.DataFrame(rows)


def _pair_keys(world: str, truth: str, calibration: str, lower: str, upper: str) -> dict[str, str]:
    """The columns that name one rung pair's comparison in one cell."""
    return {"world": world, "ground_truth": truth, "calibration": calibration, "lower": lower, "upper": upper}


def matched_rate_table(per_replication: pd.DataFrame, study: StudyConfig) -> pd.DataFrame:
    """Each rung minus the one below for the same policy label (same rate), paired by replication."""
    rows = []
    for (world, truth, calibration), frame in _groups(per_replication):
        outcomes = (*_outcomes(frame), "deviation", "early_cost")
        for policy, by_policy in frame.groupby("policy", sort=False):
            for outcome in outcomes:
                table = by_policy.pivot(index="replication", columns="encoder", values=outcome)
                for lower, upper in rung_pairs(study):
                    rows.append(
                        {
                            **_pair_keys(world, truth, calibration, lower, upper),
                            "policy": policy,
                            "outcome": outcome,
                            **_difference_row(table[upper].to_numpy(), table[lower].to_numpy()),
                        }
                    )
    return pd.DataFrame(rows)


def _pooled_equal_deviation(
    frame: pd.DataFrame, study: StudyConfig, lower: str, upper: str, outcome: str
) -> dict:
    """Upper − lower at equal δ, averaged per replication over every (policy, level) both rungs reach."""
    levels = np.asarray(study.deviation_levels, np.float64)
    uppers, lowers = [], []
    for policy_name in study.policies:
        common = {"policy_name": policy_name, "axis": "deviation", "outcome": outcome, "levels": levels}
        upper_curves = policy_curves(frame, encoder=upper, **common)
        lower_curves = policy_curves(frame, encoder=lower, **common)
        reached = np.isfinite(upper_curves).all(axis=0) & np.isfinite(lower_curves).all(axis=0)
        uppers.append(upper_curves[:, reached])
        lowers.append(lower_curves[:, reached])
    upper_values, lower_values = np.concatenate(uppers, axis=1), np.concatenate(lowers, axis=1)
    if upper_values.shape[1] == 0:
        nothing = np.full(len(upper_values), np.nan)
        return {**_difference_row(nothing, nothing), "n_points": 0}
    row = _difference_row(upper_values.mean(axis=1), lower_values.mean(axis=1))
    return {**row, "n_points": int(upper_values.shape[1])}


def rung_table(per_replication: pd.DataFrame, matched: pd.DataFrame, study: StudyConfig) -> pd.DataFrame:
    """The adjacent-rung table: per cell, calibration and pair, the pooled equal-δ row and the baselines.

    Rows: the exploring policies at equal slot deviation (per replication the mean over every policy and
    δ level both rungs reach), then greedy_online, static, random and oracle at their own (matched) labels.
    """
    rows = []
    for (world, truth, calibration), frame in _groups(per_replication):
        for lower, upper in rung_pairs(study):
            for outcome in _outcomes(frame):
                key = {"world": world, "ground_truth": truth, "calibration": calibration}
                pair = {"lower": lower, "upper": upper}
                rows.append(
                    {
                        **key,
                        **pair,
                        "comparison": POOLED,
                        "outcome": outcome,
                        **_pooled_equal_deviation(frame, study, lower, upper, outcome),
                    }
                )
                baseline = matched[
                    (matched["world"] == world)
                    & (matched["ground_truth"] == truth)
                    & (matched["calibration"] == calibration)
                    & (matched["lower"] == lower)
                    & (matched["upper"] == upper)
                    & (matched["outcome"] == outcome)
                    & matched["policy"].isin(BASELINE_LABELS)
                ]
                for label in ("greedy_online", "static", "random", "oracle"):
                    found = baseline[baseline["policy"] == label]
                    if len(found):
                        values = found.iloc[0]
                        rows.append(
                            {
                                **key,
                                **pair,
                                "comparison": label,
                                "outcome": outcome,
                                **{
                                    column: values[column]
                                    for column in (
                                        "upper_value",
                                        "lower_value",
                                        "difference",
                                        "ci_low",
                                        "ci_high",
                                        "p_value",
                                    )
                                },
                            }
                        )
    return pd.DataFrame(rows)


def agreement(rungs: pd.DataFrame) -> pd.DataFrame:
    """Per world, pair, calibration and outcome of the pooled row: whether every ground truth agrees.

    A claim stands ("higher" / "lower") only where the interval excludes zero with the same sign under
    every ground truth of the study; otherwise "no claim".
    """
    pooled = rungs[rungs["comparison"] == POOLED]
    rows = []
    for (world, calibration, lower, upper, outcome), frame in pooled.groupby(
        ["world", "calibration", "lower", "upper", "outcome"], sort=False
    ):
        above, below = (frame["ci_low"] > 0).all(), (frame["ci_high"] < 0).all()
        rows.append(
            {
                "world": world,
                "calibration": calibration,
                "lower": lower,
                "upper": upper,
                "outcome": outcome,
                "ground_truths": len(frame),
                "claim": "higher" if above else "lower" if below else "no claim",
            }
        )
    return pd.DataFrame(rows)


def select_goal_policy(selection: pd.DataFrame) -> dict[str, Any] | None:
    """The exploring configuration with the most expected clicks on the selection pool (first calibration)."""
    if selection.empty:
        return None
    first = selection["calibration"].iloc[0]
    rows = selection[(selection["calibration"] == first) & ~selection["policy"].isin(BASELINE_LABELS)]
    if rows.empty:
        return None
    best = rows.sort_values("expected_clicks", ascending=False, kind="stable").iloc[0]
    return {
        "encoder": str(best["encoder"]),
        "policy": str(best["policy"]),
        "policy_name": str(best["policy"]).split("@")[0],
        "pool": str(best["pool"]),
        "ground_truth": str(best["ground_truth"]),
        "calibration": str(first),
        "expected_clicks": float(best["expected_clicks"]),
    }


def _best_text_free_new_item_clicks(
    frame: pd.DataFrame, study: StudyConfig, level: float
) -> tuple[str | None, np.ndarray]:
    """The `none` policy with the most expected new-item clicks at slot deviation `level`, per replication."""
    best_name, best_values = None, np.array([np.nan])
    for policy_name in study.policies:
        values = policy_curves(
            frame,
            encoder=TEXT_FREE_ENCODER,
            policy_name=policy_name,
            axis="deviation",
            outcome="new_item_expected_clicks",
            levels=np.array([level]),
        )[:, 0]
        if np.isfinite(values).all() and (best_name is None or values.mean() > best_values.mean()):
            best_name, best_values = policy_name, values
    return best_name, best_values


def churn_goal(per_replication: pd.DataFrame, selection: pd.DataFrame, study: StudyConfig) -> dict[str, Any]:
    """The churn world's goal: the chosen policy beats greedy-online, and ≥ 1.5× `none`'s new-item clicks.

    Per ground truth and calibration of the reported pool: the chosen configuration's expected clicks minus
    its own rung's greedy_online (paired interval above zero), and its expected clicks on new items over
    those of the best `none` policy read at the same slot deviation (the most favourable comparator for
    `none`, so the ratio is conservative).
    """
    chosen = select_goal_policy(selection)
    goal: dict[str, Any] = {"chosen": chosen, "per_ground_truth": [], "met": None}
    frame = per_replication[per_replication["world"] == GOAL_WORLD]
    if chosen is None or frame.empty or TEXT_FREE_ENCODER not in study.encoders:
        return goal
    results = []
    for (truth, calibration), cell in frame.groupby(["ground_truth", "calibration"], sort=False):
        rows = cell[cell["encoder"] == chosen["encoder"]].set_index(["policy", "replication"])
        ours = rows.loc[chosen["policy"]].sort_index()
        greedy = rows.loc["greedy_online"].sort_index()
        lift = paired_difference(
            treatment=ours["expected_clicks"].to_numpy(), control=greedy["expected_clicks"].to_numpy()
        )
        level = float(ours["deviation"].mean())
        comparator, text_free = _best_text_free_new_item_clicks(cell, study, level)
        new_clicks = ours["new_item_expected_clicks"].to_numpy()
        found = comparator is not None
        versus = paired_difference(treatment=new_clicks, control=text_free) if found else None
        ratio = float(new_clicks.mean() / text_free.mean()) if found and text_free.mean() > 0 else np.nan
        results.append(
            {
                "ground_truth": truth,
                "calibration": calibration,
                "lift_vs_greedy_online": lift.mean,
                "lift_ci": [lift.ci_low, lift.ci_high],
                "deviation": level,
                "new_item_expected_clicks": float(new_clicks.mean()),
                "none_policy": comparator,
                "none_new_item_expected_clicks": float(text_free.mean()) if found else np.nan,
                "new_item_ratio": ratio,
                "new_item_difference_ci": [versus.ci_low, versus.ci_high] if versus else [np.nan, np.nan],
                "beats_greedy": bool(lift.ci_low > 0),
                "ratio_met": bool(np.isfinite(ratio) and ratio >= GOAL_RATIO),
            }
        )
    goal["per_ground_truth"] = results
    goal["met"] = bool(results) and all(row["beats_greedy"] and row["ratio_met"] for row in results)
    return goal


def _cell_frame(simulations: Mapping[StudyCell, SimulationResult], table: str) -> pd.DataFrame:
    """One table of every cell's simulation with world, ground truth and encoder columns first."""
    frames = [
        getattr(result, table).assign(world=cell.world, ground_truth=cell.ground_truth, encoder=cell.encoder)
        for cell, result in simulations.items()
    ]
    frame = pd.concat(frames, ignore_index=True)
    return frame[[*CELL_COLUMNS, *[c for c in frame.columns if c not in CELL_COLUMNS]]]


def plan_study(
    *,
    worlds: Mapping[tuple[str, str], SimulationWorld],
    recommenders: Mapping[tuple[str, str], RecommenderOutputs],
    text_embeddings: np.ndarray,
    simulate: SimulateConfig,
    study: StudyConfig,
    recommender_facts: Mapping[tuple[str, str], dict[str, Any]] | None = None,
    item_titles: Sequence[str] | None = None,
) -> dict[str, SimulationPlan]:
    """One simulation plan per cell (keyed by `StudyCell.key`), all on the same text clusters.

    `worlds` by (world, ground truth); `recommenders` and `recommender_facts` by (encoder, world).
    """
    from explorec.simulation.simulate import plan_simulation

    plans = {}
    for cell in study_cells(study):
        world_key, recommender_key = (cell.world, cell.ground_truth), (cell.encoder, cell.world)
        if world_key not in worlds or recommender_key not in recommenders:
            raise ValueError(f"no world or recommender for study cell {cell.key}")
        plans[cell.key] = plan_simulation(
            world=worlds[world_key],
            recommender=recommenders[recommender_key],
            text_embeddings=text_embeddings,
            cfg=study_simulate_config(simulate, study, cell),
            recommender_facts=(recommender_facts or {}).get(recommender_key),
            item_titles=item_titles,
        )
    return plans


def assemble_study(
    plans: dict[str, SimulationPlan],
    results: dict[str, Sequence[UnitResult]],
    *,
    study: StudyConfig,
    output_dir: Path,
) -> StudyResult:
    """The study's tables, answer, plots and report from each cell's unit results."""
    from explorec.simulation.simulate import assemble_simulation
    from explorec.simulation.study_report import study_markdown, study_plots

    started = min(plan.started for plan in plans.values())
    simulate = {
        cell: assemble_simulation(
            plans[cell.key],
            results[cell.key],
            output_dir=Path(output_dir) / "cells" / cell.key.replace("/", "_"),
        )
        for cell in study_cells(study)
    }
    reported = {cell: simulate[cell] for cell in reported_cells(study)}
    per_replication = with_early_cost(_cell_frame(reported, "per_replication"))
    early = (
        per_replication.groupby([*CELL_COLUMNS, "calibration", "policy"], sort=False)["early_cost"]
        .mean()
        .rename("early_cost")
    )
    summary = _cell_frame(reported, "summary").join(early, on=[*CELL_COLUMNS, "calibration", "policy"])
    matched = matched_rate_table(per_replication, study)
    rungs = rung_table(per_replication, matched, study)
    chosen_on = {cell: simulate[cell] for cell in selection_cells(study)}
    selection = (
        _cell_frame(chosen_on, "summary").assign(pool=study.selection_pool) if chosen_on else pd.DataFrame()
    )
    first = next(iter(reported.values()))
    world_info = {
        **{
            key: value
            for key, value in first.world_info.items()
            if key not in ("recommender", "recommender_fit", "ground_truth", "ground_truth_l2", "world")
        },
        "cells": {cell.key: result.world_info for cell, result in simulate.items()},
        "simulation_runtime_s": {cell.key: result.runtime_s for cell, result in simulate.items()},
    }
    result = StudyResult(
        summary=summary,
        per_replication=per_replication,
        comparisons=_cell_frame(reported, "comparisons"),
        equal_cost=equal_cost_table(per_replication, study),
        matched_rate=matched,
        rungs=rungs,
        agreement=agreement(rungs),
        selection=selection,
        curves=_cell_frame(reported, "curves"),
        answer={},
        world_info=world_info,
    )
    result.answer = study_answer(result, study)
    cfg = next(iter(plans.values())).cfg
    result.plots = study_plots(result, study, Path(output_dir))
    result.runtime_s = time.time() - started
    result.markdown = study_markdown(result, cfg, study)
    return result


def study_answer(result: StudyResult, study: StudyConfig) -> dict[str, Any]:
    """The headline: per world the adjacent-rung differences at equal δ, their agreement, and the goal."""
    pooled = result.rungs[result.rungs["comparison"] == POOLED]
    per_world: dict[str, Any] = {}
    for world, frame in pooled.groupby("world", sort=False):
        per_world[world] = [
            {
                key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                for key, value in row.items()
            }
            for row in frame.drop(columns=["comparison"]).to_dict("records")
        ]
    return {
        "ladder": list(study.encoders),
        "pairs": [list(pair) for pair in rung_pairs(study)],
        "worlds": per_world,
        "agreement": result.agreement.to_dict("records"),
        "goal": churn_goal(result.per_replication, result.selection, study)
        if GOAL_WORLD in study.worlds
        else None,
    }


def run_study(
    *,
    worlds: Mapping[tuple[str, str], SimulationWorld],
    recommenders: Mapping[tuple[str, str], RecommenderOutputs],
    text_embeddings: np.ndarray,
    simulate: SimulateConfig,
    study: StudyConfig,
    output_dir: Path,
    recommender_facts: Mapping[tuple[str, str], dict[str, Any]] | None = None,
) -> StudyResult:
    """Simulate every cell here, unit after unit; tables, answer and report.

    The sequential composition of `plan_study`, `run_unit` and `assemble_study`; the study flow submits the
    units (cell × calibration × replication) to Prefect's task runner instead.
    """
    from explorec.simulation.simulate import run_unit

    plans = plan_study(
        worlds=worlds,
        recommenders=recommenders,
        text_embeddings=text_embeddings,
        simulate=simulate,
        study=study,
        recommender_facts=recommender_facts,
    )
    results = {key: [run_unit(plan, unit) for unit in plan.units()] for key, plan in plans.items()}
    return assemble_study(plans, results, study=study, output_dir=output_dir)
