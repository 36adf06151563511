"""`explorec loop`: the production loop played against the simulator's users.

Round 0 trains the first champion on the base data: the data set without anything a simulated user does
after their visible cut-off (`simulation.ground_truth.restrict_dataset`), so the towers never see the hidden
interests the loop's traffic may discover. Then each round r = 1..K:

1. serve: the champion (with `loop.exploration_floor`) answers `loop.visits` visits of every traffic user
   through the service's own code path (`RecommendationService`: policy, propensities, explanations, the
   round's impression log); clicks are drawn from the simulator's click model (θ_k·p(u, i)) and sent back as
   feedback; a visit's earlier slates and clicks travel in the user's next request, as a client sends them.
2. judge: the candidate trained at the end of the previous round (it never saw this round's traffic) is
   registered; registration estimates its clicks per slot on this round's log (IPS, SNIPS, DR) before the
   gates, `ope_lift` among them. Its simulated on-policy value on the same logged requests — its own slates
   sampled `loop.truth_draws` times, expected clicks from the click model — says whether each interval
   covers the truth. It becomes champion when the gates pass.
3. learn: the next candidate trains on the base data plus every round's logged clicks so far
   (`pipeline.log_data.write_training_files`, through the generic `files` source).

Each round's traffic, judgement and the champion's version are logged as one step of the loop's MLflow run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.pipeline.loop_traffic import (
    Judgement,
    LoopError,
    LoopRound,
    LoopWorld,
    RoundTraffic,
    base_training_data,
    coverage,
    judgement_from,
    loop_curves_figure,
    loop_markdown,
    loop_world,
    rounds_frame,
    serve_round,
    simulated_value,
)

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig


@dataclass(frozen=True)
class LoopSetup:
    """Where one loop keeps its files, and its MLflow run."""

    folder: Path
    run_id: str
    tracking_uri: str

    def round_folder(self, round_index: int) -> Path:
        """The folder of round `round_index` (its impression log and training files)."""
        return self.folder / f"round-{round_index:03d}"

    def data_folder(self, round_index: int) -> Path:
        """The training files of round `round_index`'s candidate."""
        return self.round_folder(round_index) / "data"

    def log_url(self, round_index: int) -> str:
        """SQLAlchemy URL of round `round_index`'s impression log."""
        return f"sqlite:///{self.round_folder(round_index) / 'impressions.db'}"


_worlds: dict[str, tuple[LoopWorld, Any]] = {}
"""Loop worlds built in this process, by the config that decides them (every step of a loop needs one)."""


def world_for(cfg: ExplorecConfig) -> tuple[LoopWorld, Any]:
    """The loop world of `cfg` (built once per process)."""
    from explorec.config import to_dict
    from explorec.data.loading import load_dataset

    key = json.dumps(
        {name: to_dict(cfg)[name] for name in ("data", "split", "simulate", "loop", "encoder")},
        sort_keys=True,
    )
    if key not in _worlds:
        _worlds[key] = loop_world(load_dataset(cfg), cfg)
    return _worlds[key]


def start_loop(cfg: ExplorecConfig) -> LoopSetup:
    """Check the settings, write the base data, open the loop's MLflow run; returns where it lives."""
    import mlflow

    from explorec.config.compose import resolve
    from explorec.data.loading import load_dataset
    from explorec.tracking.owner import owner_tags
    from explorec.tracking.store import config_params, configure_tracking

    settings = cfg.loop
    if settings.rounds < 1 or settings.visits < 1 or settings.truth_draws < 1:
        raise LoopError("loop.rounds, loop.visits and loop.truth_draws must be at least 1")
    if not 0.0 <= settings.exploration_floor <= 1.0:
        raise LoopError(f"loop.exploration_floor must lie in [0, 1], got {settings.exploration_floor}")
    if settings.registered_model == cfg.tracking.registered_model:
        raise LoopError(
            f"loop.registered_model must differ from tracking.registered_model "
            f"({settings.registered_model}): the loop promotes its own versions and must never move "
            "the production champion"
        )
    _, world = world_for(cfg)
    target = configure_tracking(cfg.tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    run = client.create_run(
        target.experiment_id, run_name="loop", tags={"explorec.flow": "loop", **owner_tags()}
    )
    folder = resolve(settings.out) / run.info.run_id
    interactions, items = base_training_data(load_dataset(cfg), world)
    base = folder / "base"
    base.mkdir(parents=True, exist_ok=True)
    interactions.to_csv(base / "interactions.csv", index=False)
    items.to_csv(base / "items.csv", index=False)
    params = {f"loop.{key}": value for key, value in dataclasses.asdict(settings).items()}
    client.log_batch(
        run.info.run_id,
        params=[mlflow.entities.Param(k, v) for k, v in config_params(params).items()],
    )
    client.set_tag(run.info.run_id, "loop.folder", str(folder))
    return LoopSetup(folder, run.info.run_id, target.tracking_uri)


def write_round_data(setup: LoopSetup, round_index: int, base: str) -> None:
    """Write round `round_index`'s training files: the base data plus the clicks of rounds 1..r."""
    from explorec.pipeline.log_data import write_training_files
    from explorec.serving.impressions import ImpressionLog

    logs = [ImpressionLog(setup.log_url(r)) for r in range(1, round_index + 1)]
    try:
        write_training_files(
            interactions=pd.read_csv(
                setup.folder / "base" / "interactions.csv", dtype={"user_id": str, "item_id": str}
            ),
            items=pd.read_csv(setup.folder / "base" / "items.csv", dtype={"item_id": str}),
            logs=logs,
            out=setup.data_folder(round_index),
            base=base,
        )
    finally:
        for log in logs:
            log.close()


def candidate_config(overrides: Sequence[str], setup: LoopSetup, round_index: int) -> ExplorecConfig:
    """The config of round `round_index`'s candidate (its files written by `write_round_data`)."""
    from explorec.pipeline.config import load_config
    from explorec.pipeline.log_data import files_overrides

    folder = setup.data_folder(round_index)
    data = files_overrides(folder / "interactions.csv", folder / "items.csv")
    return _loop_scoped(load_config([*overrides, *data]), setup, round_index)


def _loop_scoped(cfg: ExplorecConfig, setup: LoopSetup, log_round: int) -> ExplorecConfig:
    """`cfg` registering under the loop's model and reading round `log_round`'s impression log."""
    tracking = dataclasses.replace(cfg.tracking, registered_model=cfg.loop.registered_model)
    service = dataclasses.replace(cfg.service, impression_log=setup.log_url(log_round))
    return dataclasses.replace(cfg, tracking=tracking, service=service)


def train_round_candidate(overrides: Sequence[str], setup: LoopSetup, round_index: int) -> str:
    """Train and package the candidate of round `round_index`; returns its training run id."""
    from explorec.pipeline.config import load_config
    from explorec.pipeline.registration import package_run, train_candidate

    write_round_data(setup, round_index, load_config(list(overrides)).data.name)
    cfg = candidate_config(overrides, setup, round_index)
    run_id = train_candidate(cfg).training.run_id
    package_run(cfg, run_id)
    return run_id


def first_champion(overrides: Sequence[str], setup: LoopSetup, run_id: str) -> str:
    """Register round 0's candidate (no traffic yet) and make it the loop's champion; returns its version."""
    from explorec.pipeline.registration import promote_version, register_and_gate

    cfg = candidate_config(overrides, setup, 0)
    outcome = register_and_gate(cfg, run_id)
    if not outcome.gate_passed:
        raise LoopError(
            f"the first candidate (v{outcome.version}) failed the gates, so the loop has nothing to serve: "
            + "; ".join(outcome.gate_reasons)
        )
    promote_version(cfg, outcome.version, actor="explorec loop")
    return outcome.version


def serve_traffic(
    cfg: ExplorecConfig, setup: LoopSetup, round_index: int, engaged: list[set[int]] | None
) -> tuple[str, RoundTraffic]:
    """Round `round_index`'s traffic served by the loop's champion; (champion version, traffic).

    `engaged`: per traffic user, the clusters engaged so far (None: those of the visible histories).
    """
    from mlflow import MlflowClient

    from explorec.pipeline.service import RegistrySource
    from explorec.serving.impressions import ImpressionLog
    from explorec.serving.service import RecommendationService

    world, _ = world_for(cfg)
    engaged = [set(clusters) for clusters in world.engaged] if engaged is None else engaged
    setup.round_folder(round_index).mkdir(parents=True, exist_ok=True)
    source = RegistrySource(
        MlflowClient(tracking_uri=setup.tracking_uri),
        cfg.loop.registered_model,
        cfg.registry.champion_alias,
        torch_threads=cfg.service.torch_threads,
        exploration_floor=cfg.loop.exploration_floor,
        floor_pool=cfg.loop.floor_pool,
    )
    log = ImpressionLog(setup.log_url(round_index))
    try:
        service = RecommendationService(source, log)
        traffic = serve_round(
            service,
            world,
            round_index=round_index,
            visits=cfg.loop.visits,
            seed=cfg.simulate.seed,
            engaged=engaged,
        )
    finally:
        log.close()
    return source.current().version, traffic


def judge_candidate(
    overrides: Sequence[str], setup: LoopSetup, round_index: int, run_id: str, trained_round: int
) -> Judgement:
    """Register the pending candidate against round `round_index`'s log, compare with its truth, promote."""
    from explorec.pipeline.config import load_config
    from explorec.pipeline.registration import promote_version, register_and_gate
    from explorec.pipeline.service import load_recommender
    from explorec.serving.impressions import ImpressionLog

    base = load_config(list(overrides))
    world, _ = world_for(base)
    cfg = _loop_scoped(candidate_config(overrides, setup, trained_round), setup, round_index)
    outcome = register_and_gate(cfg, run_id)
    candidate = load_recommender(cfg.tracking.registered_model, outcome.version, cfg.service.torch_threads)
    number = {user: index for index, user in enumerate(world.users)}
    log = ImpressionLog(setup.log_url(round_index))
    try:
        truth = simulated_value(
            candidate,
            log,
            lambda user, items: world.expected_clicks(number[user], items),
            draws=cfg.loop.truth_draws,
            seed=cfg.simulate.seed + round_index,
        )
    finally:
        log.close()
    promoted = False
    if outcome.gate_passed:
        promoted = promote_version(cfg, outcome.version, actor="explorec loop").promoted
    return judgement_from(
        outcome.ope,
        version=outcome.version,
        run_id=run_id,
        truth=truth,
        gate_passed=outcome.gate_passed,
        gate_reasons=outcome.gate_reasons,
        promoted=promoted,
    )


def record_round(setup: LoopSetup, loop_round: LoopRound) -> None:
    """Log one round's figures to the loop's run as step `round`."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from explorec.tracking.store import metric_dict

    now = int(time.time() * 1000)
    metrics = [
        Metric(key, value, now, loop_round.round)
        for key, value in metric_dict(loop_round.metrics()).items()
        if np.isfinite(value)
    ]
    MlflowClient(setup.tracking_uri).log_batch(setup.run_id, metrics=metrics)


def finish_loop(setup: LoopSetup, rounds: Sequence[LoopRound], settings: dict[str, Any]) -> dict[str, Any]:
    """Write the rounds table, the curves figure and the report to the loop's run and end it."""
    from mlflow import MlflowClient

    from explorec.tracking.plots import log_figure, save_figure

    client = MlflowClient(setup.tracking_uri)
    frame = rounds_frame(rounds)
    table = setup.folder / "rounds.csv"
    frame.to_csv(table, index=False)
    client.log_artifact(setup.run_id, str(table))
    log_figure(
        client,
        setup.run_id,
        lambda path: save_figure(loop_curves_figure(frame), path / "loop_curves.png"),
        "plots",
    )
    markdown = loop_markdown(rounds, settings=settings)
    client.log_text(setup.run_id, markdown, "loop.md")
    counts = coverage(rounds)
    for name, (hit, total) in counts.items():
        client.log_metric(setup.run_id, f"coverage/{name}", hit / total)
    client.set_terminated(setup.run_id, "FINISHED")
    return {
        "run_id": setup.run_id,
        "folder": str(setup.folder),
        "rounds": frame.to_dict(orient="records"),
        "coverage": {name: {"covered": hit, "judged": total} for name, (hit, total) in counts.items()},
        "champion": rounds[-1].champion if rounds else None,
        "markdown": markdown,
    }


def end_loop(setup: LoopSetup, status: str) -> None:
    """End the loop's MLflow run with `status` (FAILED when a round raised)."""
    from mlflow import MlflowClient

    MlflowClient(setup.tracking_uri).set_terminated(setup.run_id, status)


def round_text(loop_round: LoopRound) -> str:
    """One line about a round: the champion's traffic and the candidate judged on it."""
    traffic, judgement = loop_round.traffic, loop_round.judgement
    line = (
        f"round {loop_round.round}: champion v{loop_round.champion}, "
        f"{traffic['traffic/clicks_per_user']:.3f} clicks/user "
        f"({traffic['traffic/expected_clicks_per_user']:.3f} expected), "
        f"{traffic['traffic/new_clusters_per_user']:.3f} new clusters/user"
    )
    if judgement is None:
        return line
    covered = ", ".join(
        f"{name} {'covers' if hit else 'misses'}" for name, hit in judgement.covered().items()
    )
    return (
        f"{line}; candidate v{judgement.version}: simulated value {judgement.truth:.4f}, {covered}; "
        f"gate {'passed' if judgement.gate_passed else 'failed'}"
        f"{', promoted' if judgement.promoted else ''}"
    )
