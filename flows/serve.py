"""Serve every explorec flow as a Prefect deployment with a typed form: `python -m flows.serve`.

Each served flow keeps its flow's name and takes typed fields (data set, split, encoder, extra Hydra
overrides, ...) that the Prefect UI shows as a form; the fields become Hydra overrides for the flow's own
`overrides` API. Needs PREFECT_API_URL pointing at a running `prefect server` (`explorec up` sets it).

`python -m flows.serve --work-pool NAME` instead registers the same deployments to a process work pool and
exits: their runs then go to whichever `prefect worker start --pool NAME` polls the server, on any machine.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal
from uuid import UUID

from prefect import Flow, flow, serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.states import State
from pydantic import BaseModel, ConfigDict, Field

from explorec.config import conf_dir
from explorec.data.sources import source_names
from explorec.data.splits import split_names
from explorec.policies.registry import policy_names
from flows.benchmark import benchmark_flow
from flows.loop import loop_flow
from flows.pipeline import pipeline_flow
from flows.preprocess import preprocess_flow
from flows.replay import replay_flow
from flows.simulate import simulate_flow
from flows.study import study_flow
from flows.train import train_flow
from flows.tune import tune_flow

DEPLOYMENT_NAMES: dict[str, str] = {
    "preprocess": "read-validate-split",
    "train": "train-two-tower",
    "benchmark": "baselines-vs-two-tower",
    "tune": "optuna-search",
    "pipeline": "train-simulate-gate-promote",
    "simulate": "simulate-policies",
    "study": "encoder-policy-rate-study",
    "replay": "replay-sessions",
    "loop": "serve-log-judge-retrain-rounds",
}
"""Flow name → its deployment's name, which says what a run of it does (the UI lists `flow / deployment`)."""
DEFAULT_EPOCHS = 30
"""The form's epoch budget: `TrainerConfig.max_epochs` (a test keeps them equal)."""

EncoderName = Literal["minilm", "none"]
PolicyName = str
"""A registered policy: `deployments()` offers the policy registry's names as the form's choices."""
PoolName = Literal["tune", "test"]
EvaluationName = Literal["valid", "test"]

# Form field -> the Hydra override it becomes (`group=value` picks a config group option).
FORM_OVERRIDES: dict[str, str] = {
    "dataset": "data",
    "split": "split",
    "encoder": "encoder",
    "trial_budget": "tune.n_trials",
    "epochs": "trainer.max_epochs",
    "policy": "policy",
    "search": "pipeline.search",
    "simulate": "pipeline.simulate",
    "force": "pipeline.force",
    "pool": "simulate.pool",
    "replications": "simulate.n_replications",
    "study_replications": "study.n_replications",
    "run_id": "replay.run_id",
    "evaluation": "replay.evaluation",
    "rounds": "loop.rounds",
    "visits": "loop.visits",
    "exploration_floor": "loop.exploration_floor",
    "floor_pool": "loop.floor_pool",
}


class SearchSettings(BaseModel):
    """The Optuna search the pipeline may run before training (its fields matter only when `run` is on)."""

    model_config = ConfigDict(frozen=True, title="Search (optional)")

    run: bool = Field(
        default=False,
        description="run the Optuna study first and refit its chosen trial (else train the config as is)",
    )
    trial_budget: int = Field(default=20, ge=1, description="how many Optuna trials the study runs")


NO_SEARCH = SearchSettings()


def _override_key(override: str) -> str:
    """Return the key an override sets (`+a.b=1` -> `a.b`)."""
    return override.split("=", 1)[0].lstrip("+~")


def form_overrides(overrides: list[str] | None = None, **fields: Any) -> list[str]:
    """Translate typed form fields into Hydra overrides; a key also set in `overrides` is left to it."""
    extra = list(overrides or [])
    explicit = {_override_key(override) for override in extra}
    from_form = [
        _field_override(FORM_OVERRIDES[name], value)
        for name, value in fields.items()
        if value is not None and FORM_OVERRIDES[name] not in explicit
    ]
    return [*from_form, *extra]


def _field_override(key: str, value: Any) -> str:
    """Return `key=value`; a group choice without its own `conf/<group>/<value>.yaml` sets `<group>.name`."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "." not in key and not (conf_dir() / key / f"{text}.yaml").is_file():
        return f"{key}.name={text}"
    return f"{key}={text}"


@flow(name=preprocess_flow.name, log_prints=True)
def preprocess(
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Read, validate and split a data set into model-ready Parquet tables (cached by fingerprint).

    Args:
        dataset: the data set to read (Hydra group `data`)
        split: the evaluation protocol that splits train / validation / test (Hydra group `split`)
        overrides: extra Hydra overrides, e.g. `data.rating_threshold=4`; they win over the fields above
    """
    return preprocess_flow.fn(overrides=form_overrides(overrides, dataset=dataset, split=split))


@flow(name=train_flow.name, log_prints=True)
def train(
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    encoder: EncoderName = "minilm",
    epochs: int = DEFAULT_EPOCHS,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Train and evaluate the two-tower recommender on one configuration, tracked in MLflow.

    Args:
        dataset: the data set to train on (Hydra group `data`)
        split: the evaluation protocol (Hydra group `split`)
        encoder: the frozen text encoder of the item tower; `none` is the ID-only ablation
        epochs: the most training epochs (early stopping on validation NDCG@10 may stop sooner); 1-3 for
            a quick look
        overrides: extra Hydra overrides, e.g. `model.embedding_dim=128` or `tracking=server`; they win
    """
    fields = {"dataset": dataset, "split": split, "encoder": encoder, "epochs": epochs}
    return train_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=benchmark_flow.name, log_prints=True)
def benchmark(
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    epochs: int = DEFAULT_EPOCHS,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Compare Popularity, ItemKNN, EASE, ALS and the two-tower (minilm and none) on one split.

    Args:
        dataset: the data set to compare on (Hydra group `data`)
        split: the evaluation protocol (Hydra group `split`)
        epochs: the two-tower's most training epochs (early stopping may stop sooner)
        overrides: extra Hydra overrides, e.g. `benchmark.encoders=[none]`; they win over the fields above
    """
    fields = {"dataset": dataset, "split": split, "epochs": epochs}
    return benchmark_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=tune_flow.name, log_prints=True)
def tune(
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    encoder: EncoderName = "minilm",
    policy: PolicyName = "linucb",
    trial_budget: int = 20,
    epochs: int = DEFAULT_EPOCHS,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Search embedding size and exploration rate with Optuna; every trial a nested MLflow run.

    Args:
        dataset: the data set to tune on (Hydra group `data`)
        split: the evaluation protocol (Hydra group `split`)
        encoder: the frozen text encoder of the item tower; `none` is the ID-only ablation
        policy: the exploration policy whose exploration rate is searched (Hydra group `policy`)
        trial_budget: how many Optuna trials (completed + pruned) the study runs; a rerun runs only the rest
        epochs: each trial's most training epochs (the pruner's budget in `tune=pruned`)
        overrides: extra Hydra overrides, e.g. `tune=wide` or `tune.n_workers=2`; they win over the fields
    """
    fields = {"dataset": dataset, "split": split, "encoder": encoder}
    fields |= {"policy": policy, "trial_budget": trial_budget, "epochs": epochs}
    return tune_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=pipeline_flow.name, log_prints=True)
def pipeline(
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    encoder: EncoderName = "minilm",
    policy: PolicyName = "linucb",
    epochs: int = DEFAULT_EPOCHS,
    simulate: bool = True,
    force: bool = False,
    search: SearchSettings = NO_SEARCH,
    overrides: list[str] | None = None,
) -> dict[str, Any] | State:
    """The whole system: preprocess, encode, train (or tune), simulate, register, gate and promote.

    Args:
        dataset: the data set to train on (Hydra group `data`)
        split: the evaluation protocol (Hydra group `split`)
        encoder: the frozen text encoder of the item tower; `none` is the ID-only ablation
        policy: the exploration policy the registered recommender serves with (Hydra group `policy`)
        epochs: the most training epochs (early stopping on validation NDCG@10 may stop sooner); 1-3 for
            a quick look
        simulate: simulate the candidate's policy against greedy_online and the other baselines; the gate
            then needs the lower bound of its lift interval above 0
        force: train, simulate and register anew even when a finished run of the same inputs exists
        search: the Optuna search run before training, and its trial budget (off by default)
        overrides: extra Hydra overrides, e.g. `gates.ndcg_at_10.threshold=0.02`; they win over the fields
    """
    fields = {"dataset": dataset, "split": split, "encoder": encoder, "policy": policy, "epochs": epochs}
    fields |= {"simulate": simulate, "force": force}
    return pipeline_flow.fn(overrides=pipeline_overrides(search, overrides, **fields))


def pipeline_overrides(
    search: SearchSettings | dict[str, Any], overrides: list[str] | None, **fields: Any
) -> list[str]:
    """Return the pipeline form's Hydra overrides; the trial budget only when the search runs."""
    settings = SearchSettings.model_validate(search)
    budget = settings.trial_budget if settings.run else None
    return form_overrides(overrides, search=settings.run, trial_budget=budget, **fields)


@flow(name=simulate_flow.name, log_prints=True)
def simulate(
    dataset: str = "ml100k",
    pool: PoolName = "test",
    replications: int = 5,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Judge the exploration policies against oracle, static, greedy-online and random in the simulator.

    Args:
        dataset: the data set whose positives make the simulated world (Hydra group `data`)
        pool: the simulated users: `tune` (for choosing policies and rates) or `test` (reported numbers)
        replications: replications with common random numbers (paired 95% intervals need at least 2)
        overrides: extra Hydra overrides, e.g. `simulate.policy_rates.linucb=[0.5]`; they win over the fields
    """
    fields = {"dataset": dataset, "pool": pool, "replications": replications}
    return simulate_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=study_flow.name, log_prints=True)
def study(
    dataset: str = "ml100k",
    study_replications: int = 5,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Encoder (minilm vs none) x policy x exploration rate in the simulator: what the text tower buys.

    Args:
        dataset: the data set whose positives make the simulated world (Hydra group `data`)
        study_replications: replications per grid cell, with common random numbers across the grid
        overrides: extra Hydra overrides, e.g. `study.policies=[linucb,semantic_cluster]`; they win
    """
    fields = {"dataset": dataset, "study_replications": study_replications}
    return study_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=replay_flow.name, log_prints=True)
def replay(
    run_id: str,
    dataset: str = "ml100k",
    split: str = "leave_last_out",
    policy: PolicyName = "linucb",
    evaluation: EvaluationName = "valid",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Replay sessions of a training run's served model with feedback, against greedy (offline).

    Args:
        run_id: the MLflow training run whose recommender is packaged and replayed
        dataset: the data set that run was trained on (Hydra group `data`)
        split: that run's evaluation protocol (Hydra group `split`)
        policy: the served policy replayed at `replay.rates` (and, if linear, `replay.feedback_weights`)
        evaluation: `valid` to choose settings, `test` to report them
        overrides: extra Hydra overrides, e.g. `replay.visits=10` or the run's model settings; they win
    """
    quoted = "'" + run_id.replace("'", "") + "'"  # a hex id such as 1234e5… must stay a string for Hydra
    fields = {
        "run_id": quoted,
        "dataset": dataset,
        "split": split,
        "policy": policy,
        "evaluation": evaluation,
    }
    return replay_flow.fn(overrides=form_overrides(overrides, **fields))


@flow(name=loop_flow.name, log_prints=True)
def loop(
    dataset: str = "ml100k",
    policy: PolicyName = "linucb",
    epochs: int = DEFAULT_EPOCHS,
    rounds: int = 3,
    visits: int = 3,
    exploration_floor: float = 0.2,
    floor_pool: int = 30,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Rounds of serve, simulated clicks, logging, off-policy judgement, gates, promotion and retraining.

    Args:
        dataset: the data set whose users and positives make the simulated world (Hydra group `data`)
        policy: the exploration policy the loop's models serve with (Hydra group `policy`)
        epochs: each round's most training epochs (early stopping may stop sooner); 2-3 for a quick look
        rounds: rounds of traffic after the first champion; each from the second judges one candidate
        visits: visits of every traffic user per round
        exploration_floor: share of random slates mixed into what the champion serves, so that its logs
            support judging the next candidate
        floor_pool: a random slate's items are drawn from the champion's best this many for the request
            (`loop.floor_pool=null` in overrides: from every item)
        overrides: extra Hydra overrides, e.g. `loop.users=50` or `loop.pool=tune`; they win over the fields
    """
    fields = {"dataset": dataset, "policy": policy, "epochs": epochs, "rounds": rounds, "visits": visits}
    fields |= {"exploration_floor": exploration_floor, "floor_pool": floor_pool}
    return loop_flow.fn(overrides=form_overrides(overrides, **fields))


SERVED_FLOWS: tuple[Flow[..., Any], ...] = (
    preprocess,
    train,
    benchmark,
    tune,
    pipeline,
    simulate,
    study,
    replay,
    loop,
)


def registry_choices() -> dict[str, tuple[str, ...]]:
    """Return the form fields whose choices are the registered names now, with those names."""
    return {"dataset": source_names(), "split": split_names(), "policy": policy_names()}


def with_registry_choices(deployment: RunnerDeployment) -> RunnerDeployment:
    """Offer the registered names as the choices of the deployment's registry-backed form fields."""
    properties = deployment._parameter_openapi_schema.properties
    for field, names in registry_choices().items():
        if field in properties:
            properties[field]["enum"] = list(names)
    return deployment


def deployments() -> list[RunnerDeployment]:
    """Return one deployment per served flow, each validating its parameters against the typed form."""
    return [
        with_registry_choices(
            served.to_deployment(
                name=DEPLOYMENT_NAMES[served.name],
                description=(served.description or "").split("\n\n")[0],
                tags=["explorec"],
                enforce_parameter_schema=True,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
        for served in SERVED_FLOWS
    ]


WORK_POOL_TYPE = "process"
"""The work pool type `register_to_pool` creates: its workers run each flow run as a local subprocess."""


def ensure_work_pool(name: str) -> None:
    """Create the process work pool `name` unless it exists; fail if a pool of another type has the name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=name, type=WORK_POOL_TYPE, base_job_template=template)
            )
            return
    if pool.type != WORK_POOL_TYPE:
        from explorec.errors import ConfigError

        raise ConfigError(
            f"work pool {name!r} is of type {pool.type!r}; explorec registers to a process pool"
        )


def register_to_pool(name: str) -> list[UUID]:
    """Register every deployment to the process work pool `name` (created if missing); return their ids."""
    ensure_work_pool(name)
    return [deployment.apply(work_pool_name=name) for deployment in deployments()]


def main(argv: list[str] | None = None) -> None:
    """Serve the deployments until stopped, or with `--work-pool NAME` register them to that pool and exit."""
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--work-pool", help="register to this process work pool instead of serving")
    args = parser.parse_args(argv)
    if args.work_pool:
        registered = register_to_pool(args.work_pool)
        print(f"{len(registered)} deployments registered to work pool {args.work_pool!r}", flush=True)
        return
    serve(*deployments())


if __name__ == "__main__":
    # Re-import under the package name so each deployment's entrypoint reads `flows.serve.<flow>`
    # rather than `__main__.<flow>`, which the flow-run process could not import.
    from flows.serve import main as serve_main

    serve_main()
