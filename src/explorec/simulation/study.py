"""`explorec study`: item-tower encoder × exploring policy × exploration rate through the simulator.

For every encoder (e.g. `minilm`, `none`) the simulator runs every policy at every rate of the grid on the
same world (same pools, ground truth, click models, frozen noise, click uniforms and text clusters), with
that encoder's two-tower recommender. Each configuration yields long-run outcomes (expected clicks over the
horizon, new-cluster discovery, hidden-interest recall), its short-term cost (slot deviation δ vs greedy;
early-visit CTR) and its offline served-slate metrics (first-visit NDCG/Recall@K vs hidden positives, ILD).

Equal-cost comparison: for each policy, replication and encoder the points (cost, outcome) of its rates,
plus greedy_online (every policy at rate 0, cost 0), are joined by straight lines in order of cost and read
at fixed cost levels (no extrapolation beyond the largest cost reached). The first encoder minus the second
at the same level, paired by replication (common random numbers), gives a mean and a 95% paired t interval.
The intervals reflect click and policy randomness in this one world and these two fits, not refits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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

if TYPE_CHECKING:
    from explorec.simulation.simulate import SimulationPlan, UnitResult

COST_AXES = {"deviation": "slot deviation δ", "early_cost": "relative early-visit CTR loss"}
OUTCOMES = ("expected_clicks", "new_clusters_clicked", "hidden_recall")


def study_simulate_config(simulate: SimulateConfig, study: StudyConfig) -> SimulateConfig:
    """The simulator configuration of the study: its grid, calibrations, replications and pool; no OPE."""
    calibrations = [
        c for c in simulate.calibrations if not study.calibrations or c.name in study.calibrations
    ]
    if not calibrations:
        raise ValueError(f"study.calibrations {study.calibrations} match no simulate.calibrations")
    return replace(
        simulate,
        policy_rates={name: [float(rate) for rate in study.exploration_rates] for name in study.policies},
        calibrations=calibrations,
        n_replications=study.n_replications,
        pool=study.pool,
        ope_logging_policy="",
        ope_target_policies=[],
    )


def with_early_cost(per_replication: pd.DataFrame) -> pd.DataFrame:
    """Add `early_cost` = 1 − early CTR / greedy_online's (same encoder, calibration, replication)."""
    keys = ["encoder", "calibration", "replication"]
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


def equal_cost_table(per_replication: pd.DataFrame, study: StudyConfig) -> pd.DataFrame:
    """First encoder minus second at equal cost, per calibration × axis × level × policy × outcome."""
    treatment, control = study.encoders
    rows = []
    for calibration, by_calibration in per_replication.groupby("calibration", sort=False):
        replications = sorted(by_calibration["replication"].unique())
        for axis, levels in (("deviation", study.deviation_levels), ("early_cost", study.early_cost_levels)):
            levels_array = np.asarray(levels, np.float64)
            for policy_name in study.policies:
                curves = {
                    (encoder, outcome): np.stack(
                        [
                            cost_curve(
                                _policy_points(
                                    by_calibration[
                                        (by_calibration["encoder"] == encoder)
                                        & (by_calibration["replication"] == replication)
                                    ],
                                    policy_name,
                                ),
                                axis=axis,
                                outcome=outcome,
                                levels=levels_array,
                            )
                            for replication in replications
                        ]
                    )
                    for encoder in (treatment, control)
                    for outcome in OUTCOMES
                }
                for index, level in enumerate(levels_array):
                    for outcome in OUTCOMES:
                        a = curves[(treatment, outcome)][:, index]
                        b = curves[(control, outcome)][:, index]
                        row = {
                            "calibration": calibration,
                            "axis": axis,
                            "level": float(level),
                            "policy": policy_name,
                            "outcome": outcome,
                            treatment: float(np.mean(a)),
                            control: float(np.mean(b)),
                            "difference": np.nan,
                            "ci_low": np.nan,
                            "ci_high": np.nan,
                            "p_value": np.nan,
                        }
                        if np.isfinite(a).all() and np.isfinite(b).all():
                            difference = paired_difference(treatment=a, control=b)
                            row.update(
                                difference=difference.mean,
                                ci_low=difference.ci_low,
                                ci_high=difference.ci_high,
                                p_value=difference.p_value,
                            )
                        rows.append(row)
    return pd.DataFrame(rows)


def matched_rate_table(per_replication: pd.DataFrame, study: StudyConfig) -> pd.DataFrame:
    """First encoder minus second for the same policy label (same rate), paired by replication."""
    treatment, control = study.encoders
    rows = []
    for (calibration, policy), frame in per_replication.groupby(["calibration", "policy"], sort=False):
        pivot = {
            outcome: frame.pivot(index="replication", columns="encoder", values=outcome)
            for outcome in (*OUTCOMES, "deviation", "early_cost")
        }
        for outcome, table in pivot.items():
            difference = paired_difference(
                treatment=table[treatment].to_numpy(), control=table[control].to_numpy()
            )
            rows.append(
                {
                    "calibration": calibration,
                    "policy": policy,
                    "outcome": outcome,
                    treatment: float(table[treatment].mean()),
                    control: float(table[control].mean()),
                    "difference": difference.mean,
                    "ci_low": difference.ci_low,
                    "ci_high": difference.ci_high,
                }
            )
    return pd.DataFrame(rows)


def study_answer(equal_cost: pd.DataFrame, summary: pd.DataFrame, study: StudyConfig) -> dict[str, Any]:
    """The headline per calibration: each policy's gain from the encoder at equal δ, and who uses it best.

    "Uses it best" = the largest mean gain in expected clicks (long-term reward) over the δ levels that
    both encoders reach; discovery and early-cost gains are reported beside it.
    """
    treatment, control = study.encoders
    answer: dict[str, Any] = {"treatment": treatment, "control": control, "calibrations": {}}
    for calibration, frame in equal_cost.groupby("calibration", sort=False):
        on_deviation = frame[(frame["axis"] == "deviation") & frame["difference"].notna()]
        per_policy = {}
        for policy, rows in on_deviation.groupby("policy", sort=False):
            gains = rows.groupby("outcome")["difference"].mean()
            per_policy[policy] = {
                "levels": sorted(rows["level"].unique().tolist()),
                "mean_gain_expected_clicks": float(gains.get("expected_clicks", np.nan)),
                "mean_gain_new_clusters_clicked": float(gains.get("new_clusters_clicked", np.nan)),
                "mean_gain_hidden_recall": float(gains.get("hidden_recall", np.nan)),
            }
        best = (
            max(per_policy, key=lambda name: per_policy[name]["mean_gain_expected_clicks"])
            if per_policy
            else None
        )
        rows = summary[summary["calibration"] == calibration]
        greedy = rows[rows["policy"] == "greedy_online"].set_index("encoder")
        exploring = rows[~rows["policy"].isin(BASELINE_LABELS) & (rows["encoder"] == treatment)]
        top = exploring.sort_values("expected_clicks", ascending=False).head(1)
        answer["calibrations"][calibration] = {
            "per_policy": per_policy,
            "uses_it_best": best,
            "greedy_online_expected_clicks": {
                enc: float(greedy.loc[enc, "expected_clicks"]) for enc in greedy.index
            },
            "greedy_online_new_clusters": {
                enc: float(greedy.loc[enc, "new_clusters_clicked"]) for enc in greedy.index
            },
            "best_configuration_with_treatment": None if top.empty else str(top["policy"].iloc[0]),
        }
    return answer


def _combine(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-encoder frames with an `encoder` column first."""
    return pd.concat(
        [frame.assign(encoder=encoder) for encoder, frame in frames.items()], ignore_index=True
    ).pipe(lambda frame: frame[["encoder", *[c for c in frame.columns if c != "encoder"]]])


def plan_study(
    *,
    world: SimulationWorld,
    recommenders: dict[str, RecommenderOutputs],
    text_embeddings: np.ndarray,
    simulate: SimulateConfig,
    study: StudyConfig,
    recommender_facts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, SimulationPlan]:
    """One simulation plan per encoder (study.encoders order), all on the same world and text clusters."""
    from explorec.simulation.simulate import plan_simulation

    missing = [encoder for encoder in study.encoders if encoder not in recommenders]
    if missing:
        raise ValueError(f"no recommender for encoders {missing}")
    cfg = study_simulate_config(simulate, study)
    return {
        encoder: plan_simulation(
            world=world,
            recommender=recommenders[encoder],
            text_embeddings=text_embeddings,
            cfg=cfg,
            recommender_facts=(recommender_facts or {}).get(encoder),
        )
        for encoder in study.encoders
    }


def assemble_study(
    plans: dict[str, SimulationPlan],
    results: dict[str, Sequence[UnitResult]],
    *,
    study: StudyConfig,
    output_dir: Path,
) -> StudyResult:
    """The study's tables, answer, plots and report from each encoder's unit results."""
    from explorec.simulation.simulate import assemble_simulation
    from explorec.simulation.study_report import study_markdown, study_plots

    started = min(plan.started for plan in plans.values())
    simulations = {
        encoder: assemble_simulation(
            plan, results[encoder], output_dir=Path(output_dir) / f"simulate_{encoder}"
        )
        for encoder, plan in plans.items()
    }
    per_replication = with_early_cost(_combine({e: r.per_replication for e, r in simulations.items()}))
    early = (
        per_replication.groupby(["encoder", "calibration", "policy"], sort=False)["early_cost"]
        .mean()
        .rename("early_cost")
    )
    summary = _combine({e: r.summary for e, r in simulations.items()}).join(
        early, on=["encoder", "calibration", "policy"]
    )
    equal_cost = equal_cost_table(per_replication, study)
    first = next(iter(simulations.values()))
    world_info = {
        **{
            key: value
            for key, value in first.world_info.items()
            if key not in ("recommender", "recommender_fit")
        },
        "recommenders": {e: r.world_info["recommender"] for e, r in simulations.items()},
        "recommender_fit": {e: r.world_info["recommender_fit"] for e, r in simulations.items()},
        "simulation_runtime_s": {e: r.runtime_s for e, r in simulations.items()},
    }
    result = StudyResult(
        summary=summary,
        per_replication=per_replication,
        comparisons=_combine({e: r.comparisons for e, r in simulations.items()}),
        equal_cost=equal_cost,
        matched_rate=matched_rate_table(per_replication, study),
        answer=study_answer(equal_cost, summary, study),
        world_info=world_info,
    )
    cfg = next(iter(plans.values())).cfg
    result.plots = study_plots(result, study, Path(output_dir))
    result.runtime_s = time.time() - started
    result.markdown = study_markdown(result, cfg, study)
    return result


def run_study(
    *,
    world: SimulationWorld,
    recommenders: dict[str, RecommenderOutputs],
    text_embeddings: np.ndarray,
    simulate: SimulateConfig,
    study: StudyConfig,
    output_dir: Path,
    recommender_facts: dict[str, dict[str, Any]] | None = None,
) -> StudyResult:
    """Simulate the grid with each encoder's recommender on one world, here, unit after unit; tables, report.

    The sequential composition of `plan_study`, `run_unit` and `assemble_study`; the study flow submits the
    units (encoder × calibration × replication) to Prefect's task runner instead.
    """
    from explorec.simulation.simulate import run_unit

    plans = plan_study(
        world=world,
        recommenders=recommenders,
        text_embeddings=text_embeddings,
        simulate=simulate,
        study=study,
        recommender_facts=recommender_facts,
    )
    results = {encoder: [run_unit(plan, unit) for unit in plan.units()] for encoder, plan in plans.items()}
    return assemble_study(plans, results, study=study, output_dir=output_dir)
