"""The served deployments: typed forms that match the config's choices and become Hydra overrides."""

from __future__ import annotations

import inspect
import typing

import pytest

from explorec.config import compose
from explorec.data.sources import source_names
from explorec.data.splits import split_names
from explorec.policies.registry import policy_names
from flows.serve import (
    DEFAULT_EPOCHS,
    DEPLOYMENT_NAMES,
    NO_SEARCH,
    EncoderName,
    deployments,
    form_overrides,
    pipeline_overrides,
    register_to_pool,
    registry_choices,
)
from flows.serve import loop as serve_loop
from flows.serve import simulate as serve_simulate
from flows.serve import study as serve_study
from flows.serve import tune as serve_tune


def test_form_choices_match_what_the_config_accepts() -> None:
    assert registry_choices() == {"dataset": source_names(), "split": split_names(), "policy": policy_names()}
    assert set(typing.get_args(EncoderName)) == {"minilm", "none"}
    for deployment in deployments():
        properties = deployment._parameter_openapi_schema.model_dump()["properties"]
        if "policy" in properties:
            assert properties["policy"]["enum"] == list(policy_names()), deployment.flow_name


def test_form_fields_become_hydra_overrides_before_the_free_form_ones() -> None:
    overrides = form_overrides(["trainer.max_epochs=2"], dataset="synthetic", split="random_ratio")
    assert overrides == ["data=synthetic", "split=random_ratio", "trainer.max_epochs=2"]


def test_free_form_overrides_win_over_form_fields_and_unset_fields_are_left_out() -> None:
    overrides = form_overrides(["data=coat", "+x=1"], dataset="synthetic", trial_budget=None, policy="mmr")
    assert overrides == ["policy=mmr", "data=coat", "+x=1"]


def test_form_of_an_unknown_field_fails() -> None:
    with pytest.raises(KeyError):
        form_overrides([], colour="blue")


def test_every_flow_is_deployed_with_a_described_typed_form() -> None:
    served = {deployment.flow_name: deployment for deployment in deployments()}
    assert set(served) == {
        "preprocess",
        "train",
        "benchmark",
        "tune",
        "pipeline",
        "simulate",
        "study",
        "replay",
        "loop",
    }
    for name, deployment in served.items():
        assert deployment.name == DEPLOYMENT_NAMES[name] != name  # says what it runs, not "explorec"
        assert deployment.entrypoint == f"flows.serve.{name}"
        assert deployment.enforce_parameter_schema
        properties = deployment._parameter_openapi_schema.model_dump()["properties"]
        assert properties["dataset"]["enum"] == list(source_names())
        if "split" in properties:
            assert properties["split"]["enum"] == list(split_names())
        assert properties["overrides"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
        assert all(field.get("description") for field in properties.values()), name


def test_form_defaults_are_the_config_defaults() -> None:
    cfg = compose([])
    search, policy = cfg.tune, cfg.policy
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(serve_tune.fn).parameters.items()
    }
    assert defaults["dataset"] == cfg.data.name == compose().data.name
    assert defaults["split"] == cfg.split.name
    assert defaults["policy"] == policy.name
    assert defaults["trial_budget"] == search.n_trials
    simulate_defaults = {
        name: parameter.default for name, parameter in inspect.signature(serve_simulate.fn).parameters.items()
    }
    assert simulate_defaults["pool"] == cfg.simulate.pool
    assert simulate_defaults["replications"] == cfg.simulate.n_replications
    study_defaults = inspect.signature(serve_study.fn).parameters["study_replications"].default
    assert study_defaults == compose().study.n_replications
    assert cfg.trainer.max_epochs == DEFAULT_EPOCHS
    loop_defaults = {
        name: parameter.default for name, parameter in inspect.signature(serve_loop.fn).parameters.items()
    }
    assert loop_defaults["rounds"] == cfg.loop.rounds and loop_defaults["visits"] == cfg.loop.visits
    assert loop_defaults["exploration_floor"] == cfg.loop.exploration_floor
    assert loop_defaults["floor_pool"] == cfg.loop.floor_pool
    assert loop_defaults["policy"] == policy.name
    assert NO_SEARCH.trial_budget == cfg.tune.n_trials and NO_SEARCH.run is cfg.pipeline.search


def test_the_pipeline_form_has_an_epoch_field_and_groups_the_search_fields() -> None:
    (deployment,) = [d for d in deployments() if d.flow_name == "pipeline"]
    schema = deployment._parameter_openapi_schema.model_dump()
    properties = schema["properties"]
    assert properties["epochs"]["default"] == DEFAULT_EPOCHS and properties["epochs"]["type"] == "integer"
    assert "trial_budget" not in properties  # only inside the search group
    group = schema["definitions"]["SearchSettings"]
    assert group["title"] == "Search (optional)"
    assert set(group["properties"]) == {"run", "trial_budget"}
    assert properties["search"]["default"] == {"run": False, "trial_budget": 20}
    assert list(properties).index("search") > list(properties).index("force")  # the group comes last


def test_the_pipeline_form_turns_epochs_and_search_into_overrides() -> None:
    with_search = pipeline_overrides({"run": True, "trial_budget": 3}, ["seed=1"], epochs=2)
    assert with_search == ["pipeline.search=true", "tune.n_trials=3", "trainer.max_epochs=2", "seed=1"]
    without = pipeline_overrides(NO_SEARCH, None, epochs=2, dataset="synthetic")
    assert without == ["pipeline.search=false", "trainer.max_epochs=2", "data=synthetic"]


def test_registering_to_a_work_pool_creates_a_process_pool_and_puts_every_deployment_in_it() -> None:
    from prefect.client.orchestration import get_client

    assert len(register_to_pool("unit-pool")) == len(DEPLOYMENT_NAMES)
    again = register_to_pool("unit-pool")  # `explorec up --work-pool` after a restart: same deployments
    with get_client(sync_client=True) as client:
        assert client.read_work_pool("unit-pool").type == "process"
        registered = [client.read_deployment(deployment_id) for deployment_id in again]
    assert {deployment.name for deployment in registered} == set(DEPLOYMENT_NAMES.values())
    assert {deployment.work_pool_name for deployment in registered} == {"unit-pool"}
    assert all(deployment.entrypoint.startswith("flows.serve") for deployment in registered)


def test_a_pool_of_another_type_is_refused() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from explorec.errors import ConfigError

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="docker-pool", type="docker"))
    with pytest.raises(ConfigError, match="'docker-pool' is of type 'docker'"):
        register_to_pool("docker-pool")
