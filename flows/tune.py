"""Flow `tune`: preprocess (cached) → encode (cached) → run the Optuna study → report on the parent run."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import to_dict
from explorec.pipeline.config import load_config
from flows.common import IO_RETRIES
from flows.train import encode_task, preprocess_task


@task(name="run-study")
def run_study_task(config: dict[str, Any], tune: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """Open or resume the study and run its remaining trials; return where it lives and what ran."""
    from explorec.config import from_dict
    from explorec.policies.spec import PolicySpec
    from explorec.tuning.workers import run_study, tune_from_dict

    study_run = run_study(from_dict(config), tune_from_dict(tune), PolicySpec(**policy))
    return asdict(study_run)


@task(name="report-study", **IO_RETRIES)
def report_task(tune: dict[str, Any], study_run: dict[str, Any]) -> dict[str, Any]:
    """Select the candidate, log plot, importances and trials table to the parent run; return the summary."""
    from mlflow import MlflowClient

    from explorec.tuning.report import log_report, study_report, study_summary
    from explorec.tuning.study import open_storage, open_study
    from explorec.tuning.workers import StudyRun, tune_from_dict

    tune_cfg = tune_from_dict(tune)
    study = open_study(tune_cfg, open_storage(tune_cfg), max_epochs=1)
    report = study_report(study, tune_cfg)
    run = StudyRun(**study_run)
    log_report(MlflowClient(run.tracking_uri), run.parent_run_id, report, tune_cfg)
    return study_summary(report, run, tune_cfg)


@flow(name="tune", log_prints=True)
def tune_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Search embedding size and exploration rate with Optuna; every trial a nested MLflow run."""
    from explorec.tuning.report import summary_markdown
    from explorec.tuning.space import base_policy

    cfg = load_config(overrides or [])
    tune, policy = cfg.tune, base_policy(cfg)
    config = to_dict(cfg)
    preprocess_task(config)
    encode_task(config)
    study_run = run_study_task(config, asdict(tune), asdict(policy))
    summary = report_task(asdict(tune), study_run)
    create_markdown_artifact(
        key="tune-summary", markdown=summary_markdown(summary), description="explorec tune"
    )
    return summary
