"""Entry point: run every policy through the simulated world and return tables, a summary and plots.

Typical use (what `explorec simulate` does through `tracked.simulate_and_track`)::

    world = world_from_dataset(dataset, cfg.simulate)
    recommender, fit_info = simulator_recommender(dataset=dataset, world=world, tower_text=tower_text,
                                                  cfg=cfg, cache_dir=Path("mlruns/simulator_recommenders"))
    result = run_simulation(world=world, recommender=recommender, text_embeddings=cluster_text,
                            cfg=cfg.simulate, output_dir=Path("out"))

`simulate.recommender=two_tower` (default) fits the towers on the leak-free restricted data set (cached,
`recommender.two_tower_recommender`); `pure_svd` is the fast stand-in. The recommender scores every
simulated user (both pools): the Platt prior is fitted on the tune pool.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from explorec.config.simulation import SimulateConfig
from explorec.data.interactions import chronological
from explorec.data.processed import ProcessedDataset, items_with_text
from explorec.evaluation.statistics import holm_adjust, paired_difference
from explorec.policies.semantic import cluster_names, text_clusters
from explorec.policies.spec import PolicySpec
from explorec.policies.transition import cluster_transition_counts
from explorec.progress import Progress
from explorec.simulation.calibration import ClickModel, PlattPrior, fit_platt_prior
from explorec.simulation.environment import SimulationWorld, build_world, position_weights
from explorec.simulation.ground_truth import TUNE_POOL, GroundTruthFits, positives_from_dataset, stream
from explorec.simulation.metrics import (
    MetricContext,
    break_even_visit,
    cumulative_curves,
    episode_metrics,
    new_items_clicked_by_visit,
)
from explorec.simulation.online import augmented_vectors
from explorec.simulation.ope_check import logs_frame, ope_cross_check
from explorec.simulation.recommender import RecommenderOutputs, stand_in_recommender, two_tower_recommender
from explorec.simulation.results import SimulationResult
from explorec.simulation.runner import (
    PLATT_STREAM,
    EpisodeInputs,
    EpisodeJob,
    PolicyResources,
    SimulatedPolicy,
    click_uniforms,
    make_policy,
    policy_specs,
    run_episode,
    run_episodes,
    target_propensities_function,
)

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig

COMPARED_METRICS = (
    "expected_clicks",
    "ctr_early",
    "ctr_late",
    "new_clusters_clicked",
    "hidden_recall",
    "first_new_cluster_click_visits",
)
CHURN_METRICS = (
    "new_item_exposure_share",
    "new_item_expected_clicks",
    "new_item_clicks",
    "new_item_first_click_visits",
)
"""Outcomes compared between policies in the churn world only (new items exist there alone)."""
CONTROLS = ("greedy_online", "static")


def _check_ope_labels(cfg: SimulateConfig, specs: list[SimulatedPolicy]) -> None:
    """Raise if the OPE logging or target labels are not simulated configurations (or are the oracle)."""
    if not cfg.ope_logging_policy:
        return
    labels = {spec.label for spec in specs} - {"oracle"}
    for label in [cfg.ope_logging_policy, *cfg.ope_target_policies]:
        if label not in labels:
            raise ValueError(
                f"OPE policy {label!r} is not among the simulated configurations {sorted(labels)}"
            )


def prior_for_calibration(
    *,
    world: SimulationWorld,
    recommender: RecommenderOutputs,
    click_model: ClickModel,
    seed: int,
    index: int,
    with_popularity: bool = False,
) -> PlattPrior:
    """The Platt prior fitted on a uniform exposure log of the tune pool under this click model.

    New items of the churn world are not in that log: it was collected before they arrived.
    """
    tune = world.pools.get(TUNE_POOL)
    return fit_platt_prior(
        recommender_scores=recommender.score(tune),
        click_probabilities=world.click_probabilities(tune, click_model),
        visible_mask=world.visible_mask(tune) | world.arrivals.new[None, :],
        rng=stream(seed, PLATT_STREAM, index),
        item_popularity=world.item_popularity()[0] if with_popularity else None,
    )


@dataclass(frozen=True)
class CalibrationPlan:
    """One click model's fixed inputs on the pool: the calibrated prior, the true p, and facts about both."""

    click_model: ClickModel
    prior: np.ndarray
    probabilities: np.ndarray
    facts: dict[str, float]


@dataclass(frozen=True)
class SimulationUnit:
    """One independent unit of a simulation: every policy's episode in one calibration and replication."""

    calibration: int
    replication: int


@dataclass(frozen=True)
class SimulationPlan:
    """What every unit of one simulation reads (never writes): settings, policies, pool, priors and truth.

    Built once by `plan_simulation`; units are then run by `run_unit` in any order, in any process (their
    random streams are derived from (seed, replication, …), never from a shared Generator), and
    `assemble_simulation` turns their results into the tables, in unit order.
    """

    cfg: SimulateConfig
    specs: tuple[SimulatedPolicy, ...]
    users: np.ndarray
    resources: PolicyResources
    context_base: dict[str, Any]
    visible_mask: np.ndarray
    calibrations: tuple[CalibrationPlan, ...]
    world_info: dict[str, Any]
    started: float
    arrival_visit: np.ndarray | None = None
    """Churn world: the visit each item enters the catalogue (None in the static world)."""
    churns: bool = False

    def units(self) -> list[SimulationUnit]:
        """Every (calibration, replication) unit, in the order the tables list them."""
        return [
            SimulationUnit(calibration, replication)
            for calibration in range(len(self.calibrations))
            for replication in range(self.cfg.n_replications)
        ]


@dataclass(frozen=True)
class UnitResult:
    """What one unit produced: per-policy metric rows, cumulative-curve rows and the OPE logs (or None)."""

    unit: SimulationUnit
    metric_rows: list[dict[str, Any]]
    curve_rows: list[dict[str, Any]]
    logs: pd.DataFrame | None


def plan_simulation(
    *,
    world: SimulationWorld,
    recommender: RecommenderOutputs,
    text_embeddings: np.ndarray,
    cfg: SimulateConfig,
    recommender_facts: dict[str, Any] | None = None,
    item_titles: Sequence[str] | None = None,
) -> SimulationPlan:
    """Everything the units share: text clusters, policy resources, and each calibration's prior and p.

    `recommender_facts` (e.g. the two-tower fit's cache hit and validation NDCG) go into `world_info`;
    with `item_titles` the text clusters are named by their most central titles there.
    """
    started = time.time()
    specs = policy_specs(cfg.policy_rates)
    _check_ope_labels(cfg, specs)
    users = world.pools.get(cfg.pool)
    with threadpool_limits(limits=cfg.blas_threads):
        clusters = text_clusters(
            text_embeddings=text_embeddings, n_clusters=cfg.n_text_clusters, seed=cfg.cluster_seed
        )
        resources = PolicyResources(
            augmented_vectors=augmented_vectors(recommender.item_vectors),
            text_embeddings=np.asarray(text_embeddings, np.float64),
            item_clusters=clusters,
            n_candidates=cfg.n_candidates,
            exploration_scale=cfg.linear_exploration_scale,
            novelty_scale=cfg.novelty_bonus_scale,
            cluster_transitions=training_cluster_transitions(world.training, clusters),
        )
        popularity, n_training_users = world.item_popularity()
        context_base = {
            "visible_items": world.visible_items(users),
            "hidden_items": world.hidden_items(users),
            "item_clusters": clusters,
            "text_embeddings": resources.text_embeddings,
            "item_popularity": popularity,
            "n_training_users": n_training_users,
            "arrivals": world.arrivals if world.arrivals.churns else None,
        }
        calibrations = tuple(
            _plan_calibration(world=world, recommender=recommender, click_model=model, index=index, cfg=cfg)
            for index, model in enumerate(world.click_models)
        )
    world_info = {
        "pool": cfg.pool,
        "n_pool_users": int(users.size),
        "n_tune_users": int(world.pools.tune.size),
        "n_test_users": int(world.pools.test.size),
        "n_items": world.n_items,
        "n_training_interactions": len(world.training),
        "ground_truth_l2": world.ground_truth.l2,
        "ground_truth_holdout_recall@20": world.ground_truth.holdout_recall,
        "ground_truth": world.ground_truth.kind,
        "world": "churn" if world.arrivals.churns else "static",
        **world.arrivals.facts(),
        "recommender": recommender.name,
        "recommender_fit": dict(recommender_facts or {}),
        **_cluster_facts(resources, item_titles),
        "calibrations": {plan.click_model.name: plan.facts for plan in calibrations},
    }
    return SimulationPlan(
        cfg=cfg,
        specs=tuple(specs),
        users=users,
        resources=resources,
        context_base=context_base,
        visible_mask=world.visible_mask(users),
        calibrations=calibrations,
        world_info=world_info,
        started=started,
        arrival_visit=world.arrivals.visit if world.arrivals.churns else None,
        churns=bool(world.arrivals.churns),
    )


def _plan_calibration(
    *,
    world: SimulationWorld,
    recommender: RecommenderOutputs,
    click_model: ClickModel,
    index: int,
    cfg: SimulateConfig,
) -> CalibrationPlan:
    """The pool's calibrated prior (Platt prior fitted on the tune pool) and true p under one click model."""
    users = world.pools.get(cfg.pool)
    prior_model = prior_for_calibration(
        world=world,
        recommender=recommender,
        click_model=click_model,
        seed=cfg.seed,
        index=index,
        with_popularity=cfg.prior_popularity,
    )
    prior = prior_model.probabilities(recommender.score(users))
    probabilities = world.click_probabilities(users, click_model)
    facts = {
        "slope_a": click_model.slope,
        "intercept_b": click_model.intercept,
        "mean_p": click_model.mean_click_probability,
        "top10_mean_p": click_model.top10_click_probability,
        "platt_slope": prior_model.slope,
        "platt_intercept": prior_model.intercept,
        "platt_popularity_slope": prior_model.popularity_slope,
        "pool_mean_p": float(probabilities.mean()),
        "pool_prior_mean": float(prior.mean()),
    }
    return CalibrationPlan(click_model, prior, probabilities, facts)


def _unit_jobs(plan: SimulationPlan) -> list[EpisodeJob]:
    """Fresh policy objects for one unit's episodes (OPE targets get their own: they may run alongside)."""
    cfg, resources = plan.cfg, plan.resources
    by_label = {spec.label: spec for spec in plan.specs}
    jobs: list[EpisodeJob] = []
    for spec in plan.specs:
        targets = None
        if cfg.ope_logging_policy and spec.label == cfg.ope_logging_policy:
            targets = {
                label: target_propensities_function(by_label[label], make_policy(by_label[label], resources))
                for label in cfg.ope_target_policies
            }
        jobs.append((spec, make_policy(spec, resources), targets))
    return jobs


def run_unit(
    plan: SimulationPlan,
    unit: SimulationUnit,
    *,
    episode_workers: int | None = None,
    progress: Progress | None = None,
) -> UnitResult:
    """Every policy's episode in one calibration and replication, with its metrics, curves and OPE logs.

    A pure function of (plan, unit): the same result in any process and any order. Episodes run on
    `episode_workers` threads (default simulate.episode_workers); `progress` advances once per episode.
    """
    cfg = plan.cfg
    calibration = plan.calibrations[unit.calibration]
    name, replication = calibration.click_model.name, unit.replication
    inputs = EpisodeInputs(
        prior=calibration.prior,
        probabilities=calibration.probabilities,
        click_uniforms=click_uniforms(
            users=plan.users,
            n_visits=cfg.n_visits,
            slate_size=cfg.slate_size,
            seed=cfg.seed,
            replication=replication,
        ),
        visible_mask=plan.visible_mask,
        visible_items=plan.context_base["visible_items"],
        position_weights=position_weights(cfg.slate_size),
        n_visits=cfg.n_visits,
        seed=cfg.seed,
        replication=replication,
        noise_std=cfg.online_noise_std,
        prior_std=cfg.online_prior_std,
        features=plan.resources.augmented_vectors,
        arrival_visit=plan.arrival_visit,
    )
    where = f"calibration {name}, replication {replication + 1}/{cfg.n_replications}"
    metric_rows, curve_rows, logs = [], [], []
    with threadpool_limits(limits=cfg.blas_threads):
        oracle_expected = run_episode(spec=plan.specs[0], policy=None, inputs=inputs).expected_rewards
        if progress is not None:
            progress.advance(1, f"{where}, oracle")
        context = MetricContext(
            **plan.context_base, oracle_expected_per_user=oracle_expected.sum(axis=(1, 2))
        )
        jobs = _unit_jobs(plan)
        workers = cfg.episode_workers if episode_workers is None else episode_workers
        episodes = run_episodes(jobs, inputs=inputs, workers=workers)
        for (spec, _, targets), (episode, episode_seconds) in zip(jobs, episodes, strict=True):
            if progress is not None:
                progress.advance(1, f"{where}, {spec.label}")
            started = time.perf_counter() - episode_seconds
            metrics = episode_metrics(episode=episode, context=context)
            metric_rows.append(
                {
                    "calibration": name,
                    "policy": spec.label,
                    "policy_name": spec.policy_name,
                    "exploration_rate": spec.exploration_rate,
                    "replication": replication,
                    "visit1_value_per_slot": float(episode.expected_rewards[:, 0].mean()),
                    **metrics,
                    "seconds": time.perf_counter() - started,
                }
            )
            cumulative, regret = cumulative_curves(episode=episode, oracle_expected=oracle_expected)
            new_clicked = (
                {"new_items_clicked_share": new_items_clicked_by_visit(episode=episode, arrivals=arrivals)}
                if (arrivals := context.arrivals) is not None
                else {}
            )
            curve_rows.extend(
                {
                    "calibration": name,
                    "policy": spec.label,
                    "replication": replication,
                    "visit": visit + 1,
                    "cumulative_expected_clicks": cumulative[visit],
                    "cumulative_regret": regret[visit],
                    **{key: float(values[visit]) for key, values in new_clicked.items()},
                }
                for visit in range(cfg.n_visits)
            )
            if targets is not None:
                frame = logs_frame(
                    users=plan.users,
                    items=episode.items,
                    propensities=episode.propensities,
                    clicks=episode.clicks,
                    expected_rewards=episode.expected_rewards,
                    target_propensities=episode.target_propensities,
                )
                logs.append(frame.assign(calibration=name, policy=spec.label, replication=replication))
    return UnitResult(unit, metric_rows, curve_rows, pd.concat(logs, ignore_index=True) if logs else None)


def compare_policies(
    per_replication: pd.DataFrame, *, metrics: tuple[str, ...] = COMPARED_METRICS
) -> pd.DataFrame:
    """Paired differences of every policy vs greedy_online and vs static; Holm per calibration × metric."""
    rows = []
    for calibration in per_replication["calibration"].unique():
        for metric in metrics:
            table = per_replication[per_replication["calibration"] == calibration].pivot(
                index="replication", columns="policy", values=metric
            )
            family = []
            for control in CONTROLS:
                for policy in table.columns:
                    if policy in (control, "oracle"):
                        continue
                    difference = paired_difference(
                        treatment=table[policy].to_numpy(), control=table[control].to_numpy()
                    )
                    family.append(
                        {
                            "calibration": calibration,
                            "metric": metric,
                            "policy": policy,
                            "control": control,
                            "mean_difference": difference.mean,
                            "ci_low": difference.ci_low,
                            "ci_high": difference.ci_high,
                            "p_value": difference.p_value,
                            "n_replications": difference.n_pairs,
                        }
                    )
            adjusted = holm_adjust(p_values=np.array([row["p_value"] for row in family]))
            for row, p_holm in zip(family, adjusted, strict=True):
                rows.append({**row, "p_holm": float(p_holm)})
    return pd.DataFrame(rows)


def summarise(per_replication: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Mean over replications per calibration and policy, with lift, discovery ratio, break-even vs greedy."""
    numeric = per_replication.drop(columns=["replication", "policy_name"])
    summary = numeric.groupby(["calibration", "policy"], sort=False).mean().reset_index()
    spread = per_replication.groupby(["calibration", "policy"], sort=False)["expected_clicks"].std(ddof=1)
    summary["expected_clicks_sd"] = spread.to_numpy()
    greedy = summary[summary["policy"] == "greedy_online"].set_index("calibration")
    static = summary[summary["policy"] == "static"].set_index("calibration")
    summary["lift_vs_greedy_online"] = summary["expected_clicks"] - summary["calibration"].map(
        greedy["expected_clicks"]
    )
    summary["lift_vs_static"] = summary["expected_clicks"] - summary["calibration"].map(
        static["expected_clicks"]
    )
    summary["discovery_ratio_vs_greedy_online"] = summary["new_clusters_clicked"] / summary[
        "calibration"
    ].map(greedy["new_clusters_clicked"])
    oracle = summary[summary["policy"] == "oracle"].set_index("calibration")
    summary["discovery_ratio_vs_oracle"] = summary["new_clusters_clicked"] / summary["calibration"].map(
        oracle["new_clusters_clicked"]
    )
    summary["early_cost_vs_greedy_online"] = (
        summary["calibration"].map(greedy["ctr_early"]) - summary["ctr_early"]
    )
    mean_curves = curves.groupby(["calibration", "policy", "visit"], sort=False)[
        "cumulative_expected_clicks"
    ].mean()
    break_even = {}
    for (calibration, policy), curve in mean_curves.groupby(level=[0, 1], sort=False):
        reference = mean_curves.loc[(calibration, "greedy_online")].to_numpy()
        break_even[(calibration, policy)] = break_even_visit(curve.to_numpy() - reference)
    summary["break_even_visit"] = [
        break_even[(c, p)] for c, p in zip(summary["calibration"], summary["policy"], strict=True)
    ]
    return summary


def training_cluster_transitions(training: pd.DataFrame, item_clusters: np.ndarray) -> np.ndarray:
    """Counts of cluster changes between consecutive items of every training history (by time, then item)."""
    ordered = chronological(training)
    users = ordered["user_idx"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if users.size else np.zeros(0, np.int64)
    return cluster_transition_counts(
        history_items=ordered["item_idx"].to_numpy(np.int64),
        history_offsets=np.r_[starts, users.size].astype(np.int64),
        item_clusters=item_clusters,
        n_clusters=int(np.max(item_clusters)) + 1,
    )


def _cluster_facts(resources: PolicyResources, titles: Sequence[str] | None) -> dict[str, Any]:
    """The text clusters' names and each one's most likely next cluster under the learned transitions."""
    if titles is None:
        return {}
    names = cluster_names(
        text_embeddings=resources.text_embeddings, item_clusters=resources.item_clusters, titles=titles
    )
    counts = resources.cluster_transitions
    if counts is None:
        return {"text_clusters": names}
    policy = PolicySpec("interest_transition", 0.0).build(
        item_clusters=resources.item_clusters, cluster_transitions=counts
    )
    following = policy.transitions.argmax(axis=1)
    return {
        "text_clusters": names,
        "cluster_transitions": [
            {"to": int(target), "probability": float(policy.transitions[source, target])}
            for source, target in enumerate(following)
        ],
    }


def assemble_simulation(
    plan: SimulationPlan, results: Sequence[UnitResult], *, output_dir: Path
) -> SimulationResult:
    """The tables, plots and summary of a simulation from its units' results (one per unit, any order)."""
    from explorec.simulation.report import markdown_summary, write_plots

    expected = plan.units()
    by_unit = {result.unit: result for result in results}
    if len(results) != len(expected) or set(by_unit) != set(expected):
        raise ValueError(
            f"a simulation needs one result per unit: {len(expected)} units, {len(results)} results"
        )
    ordered = [by_unit[unit] for unit in expected]
    per_replication = pd.DataFrame([row for result in ordered for row in result.metric_rows])
    curves = pd.DataFrame([row for result in ordered for row in result.curve_rows])
    log_frames = [result.logs for result in ordered if result.logs is not None]
    logs = pd.concat(log_frames, ignore_index=True) if log_frames else pd.DataFrame()
    result = SimulationResult(
        per_replication=per_replication,
        summary=summarise(per_replication, curves),
        comparisons=compare_policies(
            per_replication, metrics=COMPARED_METRICS + (CHURN_METRICS if plan.churns else ())
        ),
        curves=curves,
        logs=logs,
        ope=_ope_tables(logs, per_replication, plan.cfg),
        world_info=plan.world_info,
    )
    result.runtime_s = time.time() - plan.started
    result.plots = write_plots(result, Path(output_dir))
    result.markdown = markdown_summary(result, plan.cfg)
    return result


def run_simulation(
    *,
    world: SimulationWorld,
    recommender: RecommenderOutputs,
    text_embeddings: np.ndarray,
    cfg: SimulateConfig,
    output_dir: Path,
    recommender_facts: dict[str, Any] | None = None,
    item_titles: Sequence[str] | None = None,
) -> SimulationResult:
    """Simulate every policy on pool `cfg.pool` under every calibration here; write plots to `output_dir`.

    The sequential composition of `plan_simulation`, `run_unit` (every unit in order) and
    `assemble_simulation`; the flows submit the units to Prefect's task runner instead.
    """
    plan = plan_simulation(
        world=world,
        recommender=recommender,
        text_embeddings=text_embeddings,
        cfg=cfg,
        recommender_facts=recommender_facts,
        item_titles=item_titles,
    )
    progress = Progress("simulating", len(plan.units()) * (len(plan.specs) + 1), unit="episodes")
    progress.start(
        f"{len(plan.specs)} policies (oracle and baselines included) x {cfg.n_replications} replications x "
        f"{len(plan.calibrations)} calibrations, {plan.users.size} users x {cfg.n_visits} visits each"
    )
    results = [run_unit(plan, unit, progress=progress) for unit in plan.units()]
    progress.finish()
    return assemble_simulation(plan, results, output_dir=output_dir)


def _ope_tables(logs: pd.DataFrame, per_replication: pd.DataFrame, cfg: SimulateConfig) -> pd.DataFrame:
    """The OPE cross-check per calibration (visit 1, pooled over replications)."""
    frames = []
    for calibration, calibration_logs in logs.groupby("calibration", sort=False) if len(logs) else []:
        values = (
            per_replication[per_replication["calibration"] == calibration]
            .groupby("policy")["visit1_value_per_slot"]
            .mean()
        )
        check = ope_cross_check(
            logs=calibration_logs,
            target_values={label: float(values[label]) for label in cfg.ope_target_policies},
        )
        frames.append(check.assign(calibration=calibration, logging_policy=cfg.ope_logging_policy))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def world_from_dataset(
    dataset: ProcessedDataset, cfg: SimulateConfig, *, truth_fits: GroundTruthFits | None = None
) -> SimulationWorld:
    """The simulated world of a processed data set (positives = ratings ≥ cfg.min_rating)."""
    positives = positives_from_dataset(dataset, min_rating=cfg.min_rating)
    return build_world(
        positives=positives,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        cfg=cfg,
        items_with_text=items_with_text(dataset.items) if cfg.world == "churn" else None,
        truth_fits=truth_fits,
    )


def simulator_recommender(
    *,
    dataset: ProcessedDataset,
    world: SimulationWorld,
    tower_text: np.ndarray | None,
    cfg: ExplorecConfig,
    cache_dir: Path,
) -> tuple[RecommenderOutputs, dict[str, Any]]:
    """The recommender `cfg.simulate.recommender` names, and facts about how it was obtained."""
    if cfg.simulate.recommender == "pure_svd":
        recommender = stand_in_recommender(
            training=world.training,
            n_users=dataset.n_users,
            n_items=dataset.n_items,
            users=world.pools.simulated,
            dimension=cfg.simulate.stand_in_dimension,
        )
        return recommender, {}
    if cfg.simulate.recommender != "two_tower":
        raise ValueError(
            f"simulate.recommender must be two_tower or pure_svd, got {cfg.simulate.recommender!r}"
        )
    recommender, info = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=tower_text, cfg=cfg, cache_dir=cache_dir
    )
    return recommender, info.as_dict()
