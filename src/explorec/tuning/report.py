"""What a study found: Pareto front, the selection rule, trials table, importances, plot, parent-run logging.

Selection rule (documented in the parent run and the summary): among the Pareto-optimal trials (multi
mode; all COMPLETE trials in single mode) keep those whose diversity is at least `tune.diversity_floor`
and choose the one with the highest accuracy (served validation NDCG@K); ties go to the higher diversity,
then the lower trial number. When no trial clears the floor, the most diverse of them is chosen instead
and the selection says so (`cleared_floor = False`): it will not pass a diversity gate at that floor.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from explorec.config.tuning import TuneConfig


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the report sees it: state, objectives, parameters and where it is tracked."""

    number: int
    state: str
    accuracy: float
    diversity: float
    params: dict[str, Any] = field(default_factory=dict)
    epochs_run: int = 0
    mlflow_run_id: str = ""


@dataclass(frozen=True)
class Selection:
    """The chosen trial (None when there is nothing to choose from) and why."""

    trial: TrialRecord | None
    cleared_floor: bool
    message: str


def trial_records(study: Any, tune: TuneConfig) -> list[TrialRecord]:
    """Return every trial of the study as a TrialRecord (NaN objectives where it has none)."""
    records = []
    for trial in study.get_trials(deepcopy=False):
        metrics = trial.user_attrs.get("metrics", {})
        values = trial.values or []
        accuracy = values[0] if values else math.nan
        diversity_key = f"served/val/{tune.diversity_objective}"
        diversity = values[1] if len(values) > 1 else metrics.get(diversity_key, math.nan)
        records.append(
            TrialRecord(
                number=trial.number,
                state=trial.state.name,
                accuracy=float(accuracy),
                diversity=float(diversity),
                params=dict(trial.params),
                epochs_run=int(trial.user_attrs.get("epochs_run", 0)),
                mlflow_run_id=str(trial.user_attrs.get("mlflow_run_id", "")),
            )
        )
    return records


def pareto_front(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Return the COMPLETE trials no other COMPLETE trial dominates on (accuracy, diversity), both max."""
    done = [r for r in records if r.state == "COMPLETE" and not math.isnan(r.accuracy + r.diversity)]

    def dominated(a: TrialRecord) -> bool:
        return any(
            b.accuracy >= a.accuracy
            and b.diversity >= a.diversity
            and (b.accuracy > a.accuracy or b.diversity > a.diversity)
            for b in done
        )

    return sorted((r for r in done if not dominated(r)), key=lambda r: r.number)


def select_candidate(candidates: Sequence[TrialRecord], *, diversity_floor: float) -> Selection:
    """Best accuracy among candidates with diversity >= floor; else the most diverse, flagged (see module)."""
    usable = [r for r in candidates if not math.isnan(r.accuracy)]
    if not usable:
        return Selection(None, False, "no COMPLETE trial with objective values: nothing to choose")
    cleared = [r for r in usable if not math.isnan(r.diversity) and r.diversity >= diversity_floor]
    if cleared:
        best = max(cleared, key=lambda r: (r.accuracy, r.diversity, -r.number))
        message = (
            f"trial {best.number}: best accuracy {best.accuracy:.4f} among {len(cleared)} of {len(usable)} "
            f"candidate trial(s) with diversity >= {diversity_floor:g}"
        )
        return Selection(best, True, message)
    most_diverse = max(usable, key=lambda r: (_or_minus_inf(r.diversity), r.accuracy, -r.number))
    message = (
        f"no candidate trial reaches the diversity floor {diversity_floor:g} (best diversity "
        f"{most_diverse.diversity:.4f}); fell back to the most diverse trial {most_diverse.number}, which "
        "does not clear the floor"
    )
    return Selection(most_diverse, False, message)


def _or_minus_inf(value: float) -> float:
    """NaN as −inf, for sorting."""
    return -math.inf if math.isnan(value) else value


def candidate_trials(records: Sequence[TrialRecord], tune: TuneConfig) -> list[TrialRecord]:
    """The trials the rule chooses from: the Pareto front (multi) or every COMPLETE trial (single)."""
    if tune.mode == "multi":
        return pareto_front(records)
    return [r for r in records if r.state == "COMPLETE"]


def trials_table(records: Sequence[TrialRecord], *, pareto: Sequence[int], chosen: int | None) -> Any:
    """Return the trials as a pandas DataFrame (one row per trial, parameters as columns)."""
    import pandas as pd

    rows = [
        {
            "trial": r.number,
            "state": r.state,
            "accuracy": r.accuracy,
            "diversity": r.diversity,
            **{f"param:{k}": v for k, v in sorted(r.params.items())},
            "epochs_run": r.epochs_run,
            "pareto": r.number in pareto,
            "chosen": r.number == chosen,
            "mlflow_run_id": r.mlflow_run_id,
        }
        for r in records
    ]
    return pd.DataFrame(rows)


def markdown_table(frame: Any) -> str:
    """Render a DataFrame as a GitHub Markdown table (no extra dependency)."""

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def param_importances(study: Any, tune: TuneConfig) -> dict[str, dict[str, float]]:
    """Return {objective: {parameter: importance}} (fANOVA, seeded); skip where not computable."""
    import optuna

    names = ["accuracy"] if tune.mode == "single" else ["accuracy", "diversity"]
    importances: dict[str, dict[str, float]] = {}
    for index, name in enumerate(names):
        try:
            values = optuna.importance.get_param_importances(
                study,
                evaluator=optuna.importance.FanovaImportanceEvaluator(seed=tune.seed),
                target=lambda t, i=index: t.values[i],
            )
        except (RuntimeError, ValueError, ZeroDivisionError):
            continue  # too few complete trials, or a single distinct value per parameter
        importances[name] = {key: float(value) for key, value in values.items()}
    return importances


def pareto_plot(
    records: Sequence[TrialRecord],
    *,
    pareto: Sequence[int],
    selection: Selection,
    tune: TuneConfig,
    path: Path,
) -> Path:
    """Draw every COMPLETE trial's (accuracy, diversity), the Pareto front, the floor and the chosen trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in records if r.state == "COMPLETE"]
    front = sorted((r for r in done if r.number in pareto), key=lambda r: r.accuracy)
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    axes.scatter([r.accuracy for r in done], [r.diversity for r in done], c="0.6", label="trials")
    axes.plot(
        [r.accuracy for r in front], [r.diversity for r in front], "o-", c="tab:red", label="Pareto front"
    )
    for r in done:
        axes.annotate(
            str(r.number), (r.accuracy, r.diversity), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    if tune.diversity_floor > 0:
        axes.axhline(
            tune.diversity_floor, ls="--", c="tab:green", label=f"diversity floor {tune.diversity_floor:g}"
        )
    if selection.trial is not None:
        chosen = selection.trial
        axes.scatter(
            [chosen.accuracy],
            [chosen.diversity],
            marker="*",
            s=250,
            c="gold",
            edgecolors="k",
            label=f"chosen: trial {chosen.number}",
        )
    axes.set_xlabel(f"served validation NDCG@{tune.slate_size}")
    axes.set_ylabel(f"diversity ({tune.diversity_objective})")
    axes.set_title(f"study {tune.study_name}")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def study_report(study: Any, tune: TuneConfig) -> dict[str, Any]:
    """Return the study's records, Pareto front, selection and importances as one plain dict."""
    records = trial_records(study, tune)
    pareto = [r.number for r in pareto_front(records)] if tune.mode == "multi" else []
    selection = select_candidate(candidate_trials(records, tune), diversity_floor=tune.diversity_floor)
    states = [r.state for r in records]
    return {
        "records": records,
        "pareto": pareto,
        "selection": selection,
        "importances": param_importances(study, tune),
        "counts": {
            state.lower(): states.count(state)
            for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
        },
        "total_epochs": sum(r.epochs_run for r in records if r.state in ("COMPLETE", "PRUNED")),
    }


def log_report(client: Any, parent_run_id: str, report: dict[str, Any], tune: TuneConfig) -> list[str]:
    """Log the chosen trial, Pareto plot, importances and trials table to the parent run; end it."""
    from omegaconf import OmegaConf

    selection: Selection = report["selection"]
    chosen = selection.trial
    frame = trials_table(report["records"], pareto=report["pareto"], chosen=chosen.number if chosen else None)
    for key, value in report["counts"].items():
        client.log_metric(parent_run_id, f"study/n_{key}", value)
    client.log_metric(parent_run_id, "study/pareto_size", len(report["pareto"]))
    client.log_metric(parent_run_id, "study/total_epochs", report["total_epochs"])
    client.set_tag(parent_run_id, "selection", selection.message)
    if chosen is not None:
        client.set_tag(parent_run_id, "chosen_trial", str(chosen.number))
        client.set_tag(parent_run_id, "chosen_run_id", chosen.mlflow_run_id)
        client.log_metric(parent_run_id, "chosen/accuracy", chosen.accuracy)
        if not math.isnan(chosen.diversity):
            client.log_metric(parent_run_id, "chosen/diversity", chosen.diversity)
        for key, value in chosen.params.items():
            client.set_tag(parent_run_id, f"chosen.{key}", str(value))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        frame.to_csv(folder / "trials.csv", index=False)
        (folder / "trials.md").write_text(markdown_table(frame) + "\n")
        (folder / "importances.json").write_text(json.dumps(report["importances"], indent=2))
        (folder / "chosen_trial.json").write_text(
            json.dumps(
                {
                    "message": selection.message,
                    "cleared_floor": selection.cleared_floor,
                    "trial": asdict(chosen) if chosen else None,
                },
                indent=2,
                default=str,
            )
        )
        (folder / "tune_config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(tune)))
        pareto_plot(
            report["records"],
            pareto=report["pareto"],
            selection=selection,
            tune=tune,
            path=folder / "pareto_front.png",
        )
        client.log_artifacts(parent_run_id, str(folder))
        logged = sorted(path.name for path in folder.iterdir())
    client.set_terminated(parent_run_id, "FINISHED")
    return logged


def study_summary(report: dict[str, Any], study_run: Any, tune: TuneConfig) -> dict[str, Any]:
    """Return the small, JSON-serialisable summary the flow and the CLI print."""
    selection: Selection = report["selection"]
    chosen = selection.trial
    return {
        "study_name": tune.study_name,
        "storage": study_run.storage_url,
        "mode": tune.mode,
        "n_trials": tune.n_trials,
        "n_complete": report["counts"]["complete"],
        "n_pruned": report["counts"]["pruned"],
        "n_failed": report["counts"]["fail"],
        "n_running": report["counts"]["running"],
        "trials_run_now": study_run.trials_run,
        "recovered_trials": study_run.recovered_trials,
        "pareto_size": len(report["pareto"]),
        "pareto_trials": report["pareto"],
        "total_epochs": report["total_epochs"],
        "chosen_trial": None
        if chosen is None
        else {
            "number": chosen.number,
            "params": chosen.params,
            "accuracy": chosen.accuracy,
            "diversity": chosen.diversity,
            "mlflow_run_id": chosen.mlflow_run_id,
        },
        "cleared_floor": selection.cleared_floor,
        "selection": selection.message,
        "importances": report["importances"],
        "parent_run_id": study_run.parent_run_id,
        "tracking_uri": study_run.tracking_uri,
        "wall_time_s": round(study_run.wall_time_s, 2),
    }


def summary_markdown(summary: dict[str, Any]) -> str:
    """Render the study summary as Markdown (Prefect artifact, CLI text)."""
    chosen = summary["chosen_trial"]
    lines = [
        f"# Optuna study `{summary['study_name']}` ({summary['mode']})",
        "",
        f"- trials: {summary['n_complete']} complete, {summary['n_pruned']} pruned, {summary['n_failed']} "
        f"failed, {summary['n_running']} running (budget {summary['n_trials']}); "
        f"{summary['trials_run_now']} run now",
        f"- Pareto front: {summary['pareto_size']} trial(s) {summary['pareto_trials']}",
        f"- selection: {summary['selection']}",
        f"- parent MLflow run: `{summary['parent_run_id']}`; storage `{summary['storage']}`",
        f"- wall time: {summary['wall_time_s']} s; epochs trained: {summary['total_epochs']}",
    ]
    if chosen:
        lines += [
            "",
            "| chosen | value |",
            "|---|---|",
            f"| trial | {chosen['number']} |",
            f"| accuracy (served NDCG) | {chosen['accuracy']:.4f} |",
            f"| diversity | {chosen['diversity']:.4f} |",
        ]
        lines += [f"| {key} | {value} |" for key, value in chosen["params"].items()]
    return "\n".join(lines)
