"""Flow `loop`: the production loop against the simulator's users, round by round.

first champion (base data) → for each round: serve the champion → judge the previous round's candidate on
this round's log (off-policy estimate vs simulated truth, gates, promotion) → train the next candidate on
the base data plus every logged click so far → record the round. See `explorec.pipeline.loop`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from flows.train import encode_task, preprocess_task

if TYPE_CHECKING:
    from explorec.pipeline.loop import LoopSetup
    from explorec.pipeline.loop_traffic import Judgement, LoopRound, RoundTraffic


@task(name="start-loop")
def start_task(config: dict[str, Any]) -> LoopSetup:
    """Build the simulated world, write the base data and open the loop's MLflow run."""
    from explorec.pipeline.loop import start_loop

    return start_loop(from_dict(config))


@task(name="train-candidate")
def train_task(overrides: list[str], setup: LoopSetup, round_index: int) -> str:
    """Train and package the candidate on the base data plus the clicks logged up to `round_index`."""
    from explorec.pipeline.loop import train_round_candidate

    return train_round_candidate(overrides, setup, round_index)


@task(name="first-champion")
def first_champion_task(overrides: list[str], setup: LoopSetup, run_id: str) -> str:
    """Register and gate the first candidate and make it the loop's champion."""
    from explorec.pipeline.loop import first_champion

    return first_champion(overrides, setup, run_id)


@task(name="serve-traffic")
def serve_task(
    config: dict[str, Any], setup: LoopSetup, round_index: int, engaged: list[set[int]] | None
) -> tuple[str, RoundTraffic]:
    """Serve one round of simulated traffic with the champion, logging every slate and click."""
    from explorec.pipeline.loop import serve_traffic

    return serve_traffic(from_dict(config), setup, round_index, engaged)


@task(name="judge-candidate")
def judge_task(
    overrides: list[str], setup: LoopSetup, round_index: int, run_id: str, trained_round: int
) -> Judgement:
    """Register the pending candidate, estimate it on this round's log, compare with its truth, promote."""
    from explorec.pipeline.loop import judge_candidate

    return judge_candidate(overrides, setup, round_index, run_id, trained_round)


@task(name="record-round")
def record_task(setup: LoopSetup, loop_round: LoopRound) -> None:
    """Log the round's figures to the loop's MLflow run."""
    from explorec.pipeline.loop import record_round

    record_round(setup, loop_round)


@flow(name="loop", log_prints=True)
def loop_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Serve, log, learn and judge for `loop.rounds` rounds; returns the per-round table and coverage."""
    from dataclasses import asdict

    from explorec.pipeline.loop import end_loop, finish_loop, round_text
    from explorec.pipeline.loop_traffic import LoopRound

    overrides = list(overrides or [])
    cfg = load_config(overrides)
    config = to_dict(cfg)
    preprocess_task(config)
    encode_task(config)
    setup = start_task(config)
    try:
        champion = first_champion_task(overrides, setup, train_task(overrides, setup, 0))
        print(f"round 0: v{champion} is the loop's first champion")
        engaged: list[set[int]] | None = None
        pending: tuple[str, int] | None = None
        rounds: list[LoopRound] = []
        for round_index in range(1, cfg.loop.rounds + 1):
            champion, traffic = serve_task(config, setup, round_index, engaged)
            engaged = traffic.engaged
            judgement = None if pending is None else judge_task(overrides, setup, round_index, *pending)
            last = round_index == cfg.loop.rounds
            run_id = None if last else train_task(overrides, setup, round_index)
            pending = None if run_id is None else (run_id, round_index)
            loop_round = LoopRound(round_index, champion, traffic.metrics(), judgement, run_id)
            record_task(setup, loop_round)
            rounds.append(loop_round)
            print(round_text(loop_round))
        summary = finish_loop(setup, rounds, asdict(cfg.loop))
    except BaseException:
        end_loop(setup, "FAILED")
        raise
    create_markdown_artifact(key="loop", markdown=summary["markdown"], description="explorec loop")
    return summary
