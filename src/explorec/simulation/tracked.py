"""Run the simulator (and the study) on the configured data set and record everything in MLflow."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.config import EncoderConfig, ExplorecConfig, config_hash
from explorec.simulation.results import TrackedSimulation

if TYPE_CHECKING:
    from explorec.config.simulation import SimulateConfig
    from explorec.data.processed import ProcessedDataset
    from explorec.simulation.environment import SimulationWorld
    from explorec.simulation.recommender import RecommenderOutputs
    from explorec.simulation.simulate import SimulationPlan, UnitResult

TABLES = ("summary", "comparisons", "per_replication", "ope")
STUDY_TABLES = (
    "summary",
    "per_replication",
    "comparisons",
    "equal_cost",
    "matched_rate",
    "rungs",
    "agreement",
    "selection",
    "curves",
)
SIMULATION_CONTROL = "greedy_online"
"""What a candidate's policy is compared with in the pipeline's simulation."""
SIMULATION_OUTCOME = "expected_clicks"
"""The outcome whose lift over the control the pipeline's simulator gate reads."""


def cluster_text_embeddings(dataset: ProcessedDataset, cfg: ExplorecConfig) -> np.ndarray:
    """Text embeddings of every item for the clusters, MMR and ILD (the text encoder even for encoder none).

    With `encoder=none` the item tower sees no text, but discovery and the semantic policies are measured
    on the same text clusters as with a text encoder: the default text encoder (MiniLM) is used for them.
    """
    from explorec.encoders.text import item_text_embeddings

    if cfg.encoder.name == "none":
        cfg = replace(cfg, encoder=replace(EncoderConfig(), cache_dir=cfg.encoder.cache_dir))
    text = item_text_embeddings(dataset, cfg)
    if text is None:
        raise ValueError("the simulator's clusters need text embeddings")
    return text


def recommender_for(
    dataset: ProcessedDataset, world: SimulationWorld, cfg: ExplorecConfig
) -> tuple[RecommenderOutputs, dict[str, Any]]:
    """The simulator's recommender for `cfg` (cached restricted two-tower fit, or the stand-in)."""
    from explorec.config import resolve
    from explorec.encoders.text import item_text_embeddings
    from explorec.simulation.simulate import simulator_recommender

    tower_text = item_text_embeddings(dataset, cfg) if cfg.simulate.recommender == "two_tower" else None
    return simulator_recommender(
        dataset=dataset,
        world=world,
        tower_text=tower_text,
        cfg=cfg,
        cache_dir=resolve(cfg.simulate.recommender_cache_dir),
    )


def _log_fit_facts(client: Any, run_id: str, facts: dict[str, Any], prefix: str = "recommender") -> None:
    """Log the two-tower fit facts (cache hit, fit time, validation NDCG) as metrics and a tag."""
    if not facts:
        return
    client.set_tag(run_id, f"{prefix}.cache_key", facts["cache_key"])
    client.log_metric(run_id, f"{prefix}/cache_hit", float(facts["cache_hit"]))
    client.log_metric(run_id, f"{prefix}/fit_time_s", facts["fit_time_s"])
    client.log_metric(run_id, f"{prefix}/val_ndcg_at_10", facts["val_ndcg_at_10"])
    client.log_metric(run_id, f"{prefix}/epochs_run", float(facts["epochs_run"]))


@dataclass(frozen=True)
class PreparedSimulation:
    """A simulation ready to run: the plan its units read, and what its MLflow run will record about it."""

    cfg: ExplorecConfig
    plan: SimulationPlan
    recommender_facts: dict[str, Any]
    recommender_s: float
    data_fingerprint: str
    started: float


@dataclass(frozen=True)
class PreparedStudy:
    """A study ready to run: one plan per cell (`StudyCell.key`) and what its run will record.

    `recommender_facts` are keyed "encoder/world" (one fit per rung and world).
    """

    cfg: ExplorecConfig
    plans: dict[str, SimulationPlan]
    recommender_facts: dict[str, dict[str, Any]]
    recommenders_s: float
    data_fingerprint: str
    started: float


@contextlib.contextmanager
def _simulation_run(
    cfg: ExplorecConfig, kind: str, *, data_fingerprint: str, tags: dict[str, str] | None = None
) -> Iterator[tuple[Any, str, str]]:
    """Hold the tracked MLflow run `{kind}-{data}` open: yield (client, run id, tracking URI)."""
    import mlflow

    from explorec.tracking.runs import tracked_run
    from explorec.tracking.store import configure_tracking, run_tags

    target = configure_tracking(cfg.tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    all_tags = run_tags(
        config_hash=config_hash(cfg),
        data_fingerprint=data_fingerprint,
        extra={"kind": kind, **(tags or {})},
    )
    run_name = f"{kind}-{cfg.data.name}"
    with tracked_run(client, target.experiment_id, run_name=run_name, tags=all_tags) as run_id:
        yield client, run_id, target.tracking_uri


def _load(cfg: ExplorecConfig, text_cfg: ExplorecConfig | None = None) -> tuple[ProcessedDataset, np.ndarray]:
    """The processed data set and the items' cluster text (the tracking store checked first)."""
    from explorec.data.loading import load_dataset
    from explorec.tracking.store import configure_tracking

    configure_tracking(cfg.tracking)  # a broken store fails here, before any work
    dataset = load_dataset(cfg)
    return dataset, cluster_text_embeddings(dataset, text_cfg or cfg)


def _log_tables(
    client: Any, run_id: str, folder: Path, result: Any, tables: tuple[str, ...], texts: dict[str, str]
) -> None:
    """Write the result's tables as CSV and the named texts into `folder`, then log it as run artifacts."""
    for name in tables:
        getattr(result, name).to_csv(folder / f"{name}.csv", index=False)
    for filename, text in texts.items():
        (folder / filename).write_text(text)
    client.log_artifacts(run_id, str(folder))


def _log_metrics(client: Any, run_id: str, metrics: dict[str, float]) -> None:
    """Log each metric into the run."""
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


def prepare_simulation(cfg: ExplorecConfig) -> PreparedSimulation:
    """Load the data, build the world, obtain the recommender (cached fit) and plan the simulation's units."""
    from explorec.simulation.simulate import plan_simulation, world_from_dataset

    started = time.time()
    dataset, text = _load(cfg)
    world = world_from_dataset(dataset, cfg.simulate)
    fit_started = time.perf_counter()
    recommender, facts = recommender_for(dataset, world, cfg)
    recommender_s = time.perf_counter() - fit_started
    plan = plan_simulation(
        world=world,
        recommender=recommender,
        text_embeddings=text,
        cfg=cfg.simulate,
        recommender_facts=facts,
        item_titles=dataset.items.sort_values("item_idx")["title"].astype(str).tolist(),
    )
    return PreparedSimulation(cfg, plan, facts, recommender_s, dataset.fingerprint, started)


def track_simulation(prepared: PreparedSimulation, results: Sequence[UnitResult]) -> TrackedSimulation:
    """Assemble the units' results into the simulation's tables and record them as one MLflow run."""
    from explorec.simulation.simulate import assemble_simulation
    from explorec.tracking.store import config_params

    cfg = prepared.cfg
    with _simulation_run(
        cfg, "simulate", data_fingerprint=prepared.data_fingerprint, tags={"encoder": cfg.encoder.name}
    ) as (client, run_id, tracking_uri):
        for key, value in config_params({"simulate": asdict(cfg.simulate)}).items():
            client.log_param(run_id, key, value)
        client.log_param(run_id, "encoder.name", cfg.encoder.name)
        _log_fit_facts(client, run_id, prepared.recommender_facts)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            result = assemble_simulation(prepared.plan, results, output_dir=folder)
            _log_tables(client, run_id, folder, result, TABLES, {"summary.md": result.markdown})
        wall = time.time() - prepared.started
        _log_metrics(
            client,
            run_id,
            {
                "time/simulate_s": result.runtime_s,
                "time/recommender_s": prepared.recommender_s,
                "time/total_s": wall,
            },
        )
    return TrackedSimulation(
        run_id=run_id,
        tracking_uri=tracking_uri,
        runtime_s=round(result.runtime_s, 1),
        recommender_s=round(prepared.recommender_s, 1),
        total_s=round(wall, 1),
        world=result.world_info,
        markdown=result.markdown,
        comparisons=result.comparisons,
    )


def simulate_and_track(cfg: ExplorecConfig) -> TrackedSimulation:
    """Simulate every configured policy here (unit after unit) and log one MLflow run."""
    from explorec.simulation.simulate import run_unit

    prepared = prepare_simulation(cfg)
    return track_simulation(prepared, [run_unit(prepared.plan, unit) for unit in prepared.plan.units()])


def prepare_study(configs: dict[str, ExplorecConfig]) -> PreparedStudy:
    """Load the data, build each world × ground truth, obtain each rung's recommender per world, plan cells.

    `configs`: one configuration per encoder, in study.encoders order. The towers are fitted (or read from
    the cache) once per encoder and world; every ground truth of a world shares them.
    """
    from explorec.simulation.ground_truth import GroundTruthFits
    from explorec.simulation.simulate import world_from_dataset
    from explorec.simulation.study import plan_study, study_simulate_config
    from explorec.simulation.study_cells import StudyCell

    started = time.time()
    base = next(iter(configs.values()))
    study = base.study
    if list(configs) != list(study.encoders):
        raise ValueError(
            f"one configuration per study encoder {study.encoders} is needed, got {list(configs)}"
        )
    text_cfg = next((cfg for cfg in configs.values() if cfg.encoder.name != "none"), base)
    dataset, text = _load(base, text_cfg)
    truth_fits = GroundTruthFits()  # the static and churn worlds (and EASE's two truths) share their fits
    worlds = {
        (world, truth): world_from_dataset(
            dataset,
            study_simulate_config(base.simulate, study, StudyCell(world, truth, "", study.pool)),
            truth_fits=truth_fits,
        )
        for world in study.worlds
        for truth in study.ground_truths
    }
    recommenders, facts = {}, {}
    fit_started = time.perf_counter()
    for world in study.worlds:
        for encoder, cfg in configs.items():
            key = (encoder, world)
            recommenders[key], facts[key] = recommender_for(
                dataset, worlds[(world, study.ground_truths[0])], cfg
            )
    recommenders_s = time.perf_counter() - fit_started
    plans = plan_study(
        worlds=worlds,
        recommenders=recommenders,
        text_embeddings=text,
        simulate=base.simulate,
        study=study,
        recommender_facts=facts,
        item_titles=dataset.items.sort_values("item_idx")["title"].astype(str).tolist(),
    )
    fit_facts = {f"{encoder}/{world}": value for (encoder, world), value in facts.items()}
    return PreparedStudy(base, plans, fit_facts, recommenders_s, dataset.fingerprint, started)


def _log_study_answer(client: Any, run_id: str, answer: dict[str, Any]) -> None:
    """The pooled equal-δ rung differences as metrics, the agreement and the goal as tags."""
    for world, rows in answer["worlds"].items():
        for row in rows:
            if row["difference"] is None:
                continue
            name = f"{world}/{row['ground_truth']}/{row['calibration']}/{row['lower']}-{row['upper']}"
            client.log_metric(run_id, f"{name}/{row['outcome']}", row["difference"])
    for row in answer["agreement"]:
        name = (
            f"study.claim.{row['world']}.{row['calibration']}.{row['lower']}-{row['upper']}.{row['outcome']}"
        )
        client.set_tag(run_id, name, row["claim"])
    goal = answer.get("goal")
    if goal and goal.get("chosen"):
        client.set_tag(
            run_id, "study.goal.chosen", f"{goal['chosen']['policy']} [{goal['chosen']['encoder']}]"
        )
        client.set_tag(run_id, "study.goal.met", str(goal["met"]).lower())


def track_study(prepared: PreparedStudy, results: dict[str, Sequence[UnitResult]]) -> dict[str, Any]:
    """Assemble every cell's unit results into the study and record it as one MLflow run."""
    from explorec.simulation.study import assemble_study, study_simulate_config
    from explorec.tracking.store import config_params

    base = prepared.cfg
    simulate = study_simulate_config(base.simulate, base.study)
    with _simulation_run(base, "study", data_fingerprint=prepared.data_fingerprint) as (
        client,
        run_id,
        tracking_uri,
    ):
        for key, value in config_params({"study": asdict(base.study), "simulate": asdict(simulate)}).items():
            client.log_param(run_id, key, value)
        for name, facts in prepared.recommender_facts.items():
            _log_fit_facts(client, run_id, facts, prefix=f"recommender_{name.replace('/', '_')}")
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            result = assemble_study(prepared.plans, results, study=base.study, output_dir=folder)
            texts = {
                "answer.json": json.dumps(result.answer, indent=2, default=str),
                "study.md": result.markdown,
            }
            _log_tables(client, run_id, folder, result, STUDY_TABLES, texts)
        _log_study_answer(client, run_id, result.answer)
        wall = time.time() - prepared.started
        _log_metrics(
            client,
            run_id,
            {
                "time/study_s": result.runtime_s,
                "time/recommenders_s": prepared.recommenders_s,
                "time/total_s": wall,
            },
        )
    return {
        "run_id": run_id,
        "tracking_uri": tracking_uri,
        "runtime_s": round(result.runtime_s, 1),
        "recommenders_s": round(prepared.recommenders_s, 1),
        "total_s": round(wall, 1),
        "answer": result.answer,
        "recommender_fit": prepared.recommender_facts,
        "markdown": result.markdown,
    }


def study_and_track(configs: dict[str, ExplorecConfig]) -> dict[str, Any]:
    """Run `explorec study` here (unit after unit; one configuration per encoder); log one MLflow run."""
    from explorec.simulation.simulate import run_unit

    prepared = prepare_study(configs)
    results = {
        encoder: [run_unit(plan, unit) for unit in plan.units()] for encoder, plan in prepared.plans.items()
    }
    return track_study(prepared, results)


def candidate_simulation(cfg: ExplorecConfig) -> tuple[SimulateConfig | None, str]:
    """Return the simulator settings for the candidate's own policy and the baselines, or why none run.

    Only the configured policy (name, exploration rate and its own knobs) is simulated, beside the baselines
    oracle, static, greedy_online and random that every simulation runs; the OPE cross-check is left to
    `explorec simulate`.
    """
    from explorec.policies.registry import policy_class

    policy = cfg.policy
    if not cfg.pipeline.simulate:
        return None, "switched off (pipeline.simulate=false)"
    if policy.name == "greedy" or policy.exploration_rate == 0.0:
        return None, f"policy {policy.name}@{policy.exploration_rate:g} does not explore: no lift to measure"
    settings = replace(
        cfg.simulate,
        policy_rates={policy.name: [float(policy.exploration_rate)]},
        ope_logging_policy="",
        ope_target_policies=[],
    )
    if policy_class(policy.name).reranks_candidates:
        settings = replace(settings, n_candidates=policy.n_candidates)
    if policy_class(policy.name).clusters_text:
        settings = replace(settings, n_text_clusters=policy.n_clusters)
    return settings, ""
