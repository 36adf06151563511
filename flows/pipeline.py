"""Flow `pipeline`: preprocess → encode → train (or tune) → package → register → gate → promote.

Every step is a task over one library function and passes run ids and version numbers. Preprocessing
and encoding are cached by fingerprint, so a rerun with nothing changed skips them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import compose, from_dict, to_dict
from flows.common import IO_RETRIES
from flows.train import encode_task, fit_task, preprocess_task
from flows.tune import tune_flow


@task(name="package-recommender", **IO_RETRIES)
def package_task(config: dict[str, Any], run_id: str) -> dict[str, float]:
    """Log the pyfunc recommender into the training run and measure its served slates."""
    from explorec.registration import package_run

    return package_run(from_dict(config), run_id)


@task(name="register-and-gate", **IO_RETRIES)
def register_task(config: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Register the packaged model and record the gate decision (passing sets `challenger`)."""
    from explorec.registration import register_and_gate

    return register_and_gate(from_dict(config), run_id)


@task(name="promote-champion", **IO_RETRIES)
def promote_task(config: dict[str, Any], version: str) -> dict[str, Any]:
    """Move `champion` to the version after re-checking the gates under the registry lock."""
    from explorec.registration import promote_version

    return promote_version(from_dict(config), version, actor="explorec pipeline")


@flow(name="pipeline", log_prints=True)
def pipeline_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the whole system once: data, model, registry decision and promotion."""
    cfg = compose(overrides or [])
    config = to_dict(cfg)
    preprocess_task(config)
    encode_task(config)
    search = None
    if cfg.pipeline.search:
        search = tune_flow(overrides=overrides)
        config = to_dict(_chosen_config(cfg, search))
    trained = fit_task(config)
    run_id = trained["run_id"]
    served = package_task(config, run_id)
    registration = register_task(config, run_id)
    promotion = None
    if cfg.pipeline.promote and registration["gate_passed"]:
        promotion = promote_task(config, registration["version"])
    summary = {
        "run_id": run_id,
        "metrics": trained.get("metrics"),
        "served": served,
        "registration": {k: v for k, v in registration.items() if k != "decision_markdown"},
        "promotion": None
        if promotion is None
        else {k: v for k, v in promotion.items() if k != "decision_markdown"},
        "champion": (promotion or registration)["champion"],
        "tracking_uri": trained.get("tracking_uri"),
        "search": None
        if search is None
        else {k: search[k] for k in ("study_name", "parent_run_id", "pareto_size")},
    }
    create_markdown_artifact(
        key="pipeline", markdown=_markdown(summary, registration), description="explorec pipeline"
    )
    return summary


def _chosen_config(cfg: Any, search: dict[str, Any]) -> Any:
    """Return the config with the chosen trial's settings (the search's selection rule picked them)."""
    from explorec.errors import ExplorecError
    from explorec.tuning.space import apply_suggestions

    chosen = search.get("chosen_trial")
    if chosen is None:
        raise ExplorecError(f"the search chose no trial: {search.get('selection')}")
    return apply_suggestions(cfg, chosen["params"])


def _markdown(summary: dict[str, Any], registration: dict[str, Any]) -> str:
    """Return the pipeline's Prefect artifact: what ran, the MLflow run, the gate decision, the champion."""
    reg = summary["registration"]
    lines = [
        "# explorec pipeline",
        "",
        f"- MLflow run: `{summary['run_id']}` ({summary['tracking_uri']})",
        f"- registered: `{reg['registered_model']}` version {reg['version']}",
        f"- gate passed: **{reg['gate_passed']}**",
        f"- champion: version {summary['champion']}",
        "",
        "## Gate decision",
        "",
        registration["decision_markdown"],
    ]
    return "\n".join(lines)
