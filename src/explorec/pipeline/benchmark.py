"""The accuracy benchmark: baselines and the two-tower model through one harness, on one split.

Every baseline's hyper-parameters are chosen on validation NDCG@10; the chosen setting is refit on
train + validation and scored once on test. The two-tower model is selected by early stopping on validation
and scores test users from their train + validation history. Each model is one nested MLflow run under a
parent run that carries the comparison table.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.config import BenchmarkConfig, ExplorecConfig, config_hash
from explorec.data.processed import ProcessedDataset

if TYPE_CHECKING:
    from explorec.evaluation.targets import PerUserValues, UserSample

SELECTION_METRIC = "ndcg@10"
PAIRED_METRIC_FIELDS = {
    "difference": "mean_difference",
    "ci_low": "ci_low",
    "ci_high": "ci_high",
    "p_holm": "p_holm",
}
"""MLflow metric suffix -> field of a paired row."""


@dataclass(frozen=True)
class ModelResult:
    """One benchmarked model: its chosen parameters, metrics per evaluation, and timings."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, float]]
    fit_time_s: float
    run_id: str | None = None
    per_user: dict[str, PerUserValues] = field(default_factory=dict, repr=False, compare=False)


def baseline_grid(name: str, cfg: BenchmarkConfig) -> list[dict[str, Any]]:
    """Return every parameter setting of a baseline's validation grid."""
    if name == "popularity":
        return [{}]
    if name == "ease":
        return [{"l2": value} for value in cfg.ease_l2]
    if name == "item_knn":
        return [{"neighbours": value} for value in cfg.item_knn_neighbours]
    if name == "als":
        product = itertools.product(cfg.als_factors, cfg.als_regularization, cfg.als_alpha)
        return [
            {"factors": f, "regularization": r, "alpha": a, "iterations": cfg.als_iterations}
            for f, r, a in product
        ]
    raise ValueError(f"unknown baseline {name!r}")


def check_baseline_sizes(cfg: BenchmarkConfig, n_items: int) -> None:
    """Refuse, before any run starts, a catalogue too large for a configured item × item baseline."""
    from explorec.baselines.base import check_catalogue_size
    from explorec.baselines.factory import BASELINES

    for name in cfg.baselines:
        if name in BASELINES and "max_items" in {field.name for field in fields(BASELINES[name][1])}:
            check_catalogue_size(name, n_items, cfg.item_item_max_items)


def select_baseline(
    name: str,
    dataset: ProcessedDataset,
    cfg: BenchmarkConfig,
    *,
    batch_size: int,
    sample: UserSample | None = None,
) -> tuple[ModelResult, list[dict[str, Any]]]:
    """Search the baseline's grid on validation, then score the best setting on every evaluation.

    `sample`: the users each evaluation scores (default every user with a target).
    """
    from explorec.baselines.scorer import BaselineScorer
    from explorec.evaluation.targets import evaluate_per_user, evaluation_targets

    validation = [target for target in evaluation_targets(dataset) if target.name == "val"]
    trials = []
    for params in baseline_grid(name, cfg):
        fitted = BaselineScorer(name, params, dataset, max_items=cfg.item_item_max_items)
        metrics, _ = evaluate_per_user(
            fitted, dataset, batch_size=batch_size, targets=validation, sample=sample
        )
        trials.append({"params": params, "val": metrics["val"], "fit_time_s": fitted.fit_time_s})
    best = max(trials, key=lambda trial: trial["val"][SELECTION_METRIC])
    chosen = BaselineScorer(name, best["params"], dataset, max_items=cfg.item_item_max_items)
    metrics, per_user = evaluate_per_user(chosen, dataset, batch_size=batch_size, sample=sample)
    return ModelResult(name, best["params"], metrics, chosen.fit_time_s, per_user=per_user), trials


def _log_baseline_run(
    result: ModelResult,
    trials: list[dict[str, Any]],
    cfg: ExplorecConfig,
    parent_run_id: str,
    fingerprint: str,
) -> str:
    """Record one baseline as a nested MLflow run with its chosen params, metrics and grid."""
    import mlflow

    from explorec.evaluation.targets import sample_note, user_sample
    from explorec.tracking.runs import tracked_run
    from explorec.tracking.store import metric_dict, run_tags

    note = sample_note(result.metrics, user_sample(cfg.evaluation)) or "every user with a target"
    extra = {"model": result.name, "evaluation.sample": note}
    tags = run_tags(config_hash=config_hash(cfg), data_fingerprint=fingerprint, extra=extra)
    client = mlflow.MlflowClient()
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    run_name = f"{result.name}-{cfg.data.name}-{cfg.split.name}"
    with tracked_run(
        client, experiment_id, run_name=run_name, tags=tags, parent_run_id=parent_run_id
    ) as run_id:
        for key, value in result.params.items():
            client.log_param(run_id, key, value)
        client.log_param(run_id, "evaluation.max_users", cfg.evaluation.max_users)
        client.log_param(run_id, "evaluation.seed", cfg.evaluation.seed)
        flat = {
            f"{name}/{key}": value
            for name, metrics in result.metrics.items()
            for key, value in metrics.items()
        }
        for key, value in {**metric_dict(flat, prefix="final/"), "time/fit_s": result.fit_time_s}.items():
            client.log_metric(run_id, key, value)
        client.log_dict(run_id, {"grid": trials}, "validation_grid.json")
    return run_id


def comparison_table(results: list[ModelResult]) -> dict[str, Any]:
    """Return the comparison as JSON-ready rows (model, params, fit time, metrics per evaluation)."""
    return {
        "rows": [
            {
                "model": result.name,
                "params": result.params,
                "fit_time_s": round(result.fit_time_s, 2),
                "run_id": result.run_id,
                "metrics": result.metrics,
            }
            for result in results
        ]
    }


def benchmark_plot(table: dict[str, Any], path: Path, *, metric: str = SELECTION_METRIC) -> Path:
    """Draw each model's test and validation `metric`, and the paired test differences with their 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table["rows"]
    paired = (table.get("paired") or {}).get("rows", [])
    n_panels = 2 if paired else 1
    figure, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4.2), squeeze=False)
    left = axes[0][0]
    names = [row["model"] for row in rows]
    positions = np.arange(len(rows))
    left.barh(positions, [row["metrics"]["test"][metric] for row in rows], color="tab:blue", label="test")
    left.scatter(
        [row["metrics"]["val"][metric] for row in rows], positions, c="k", marker="|", s=200, label="val"
    )
    left.set_yticks(positions, names)
    left.invert_yaxis()
    left.set_xlabel(metric)
    left.set_title(f"{table['dataset']} / {table['split']}")
    left.legend(fontsize=8, loc="upper right")
    if paired:
        right = axes[0][1]
        labels = [f"{row['model']} − {row['versus']}" for row in paired]
        means = np.array([row["mean_difference"] for row in paired])
        errors = np.array(
            [[m - row["ci_low"], row["ci_high"] - m] for m, row in zip(means, paired, strict=True)]
        )
        places = np.arange(len(paired))
        right.errorbar(means, places, xerr=errors.T, fmt="o", color="tab:red", capsize=3)
        right.axvline(0.0, color="0.5", ls="--")
        right.set_yticks(places, labels, fontsize=7)
        right.invert_yaxis()
        right.set_xlabel(f"paired test {metric} difference (95% CI)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def run_benchmark(cfg: ExplorecConfig, *, output_dir: Path | None = None) -> dict[str, Any]:
    """Run every baseline and the two-tower per encoder on the configured split; return the summary."""
    import mlflow

    from explorec.config import resolve
    from explorec.data.loading import load_dataset
    from explorec.evaluation.targets import sample_note, user_sample
    from explorec.models.train import train_and_evaluate
    from explorec.pipeline.report import benchmark_markdown
    from explorec.tracking.runs import tracked_run
    from explorec.tracking.store import configure_tracking, run_tags

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    check_baseline_sizes(cfg.benchmark, dataset.n_items)
    client = mlflow.MlflowClient(target.tracking_uri)
    tags = run_tags(
        config_hash=config_hash(cfg), data_fingerprint=dataset.fingerprint, extra={"kind": "benchmark"}
    )
    started = time.perf_counter()
    sample = user_sample(cfg.evaluation)
    run_name = f"benchmark-{cfg.data.name}-{cfg.split.name}"
    with tracked_run(client, target.experiment_id, run_name=run_name, tags=tags) as parent_id:
        results = []
        for name in cfg.benchmark.baselines:
            result, trials = select_baseline(
                name, dataset, cfg.benchmark, batch_size=cfg.trainer.eval_batch_size, sample=sample
            )
            run_id = _log_baseline_run(result, trials, cfg, parent_id, dataset.fingerprint)
            results.append(replace(result, run_id=run_id))
        for encoder in cfg.benchmark.encoders:
            model_cfg, overrides = two_tower_config(cfg, encoder)
            trained = train_and_evaluate(
                model_cfg, parent_run_id=parent_id, run_name=f"two_tower-{encoder}", keep_per_user=True
            )
            params: dict[str, Any] = {"encoder": encoder, **({"overrides": overrides} if overrides else {})}
            metrics, fit_time, per_user = trained.metrics, trained.fit_time_s, trained.per_user or {}
            if cfg.split.name in cfg.benchmark.two_tower_refit:
                epochs = int(trained.best_epoch or 0) + 1
                metrics, per_user, refit_time = refit_and_evaluate(
                    model_cfg, metrics, per_user, epochs=epochs, run_id=trained.run_id
                )
                params["refit"] = f"train + valid, {epochs} epochs"
                fit_time += refit_time
            model = ModelResult(
                f"two_tower[{encoder}]", params, metrics, fit_time, trained.run_id, per_user=per_user
            )
            results.append(model)
        table = comparison_table(results)
        table["paired"] = paired_comparisons(results, baselines=cfg.benchmark.baselines)
        table.update(dataset=cfg.data.name, split=cfg.split.name, parent_run_id=parent_id)
        table["evaluation_sample"] = sample_note(results[0].metrics, sample) if results else None
        client.set_tag(
            parent_id, "evaluation.sample", table["evaluation_sample"] or "every user with a target"
        )
        table["wall_time_s"] = round(time.perf_counter() - started, 1)
        markdown = benchmark_markdown(table)
        folder = output_dir or resolve(cfg.paths.root) / "benchmarks" / parent_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "benchmark.json").write_text(json.dumps(table, indent=2))
        (folder / "benchmark.md").write_text(markdown)
        benchmark_plot(table, folder / "benchmark.png")
        client.log_artifacts(parent_id, str(folder))
        client.log_metric(parent_id, "time/wall_s", table["wall_time_s"])
        for key, value in paired_metrics(table["paired"]).items():
            client.log_metric(parent_id, key, value)
    return {**table, "markdown": markdown, "output_dir": str(folder)}


def refit_and_evaluate(
    cfg: ExplorecConfig,
    metrics: dict[str, dict[str, float]],
    per_user: dict[str, PerUserValues],
    *,
    epochs: int,
    run_id: str,
) -> tuple[dict[str, dict[str, float]], dict[str, PerUserValues], float]:
    """Refit the two-tower on train + validation for `epochs` and score it on every evaluation but val.

    Baselines are refit on train + validation before test; this treats the two-tower the same way, with
    the epoch count its validation run chose. Validation metrics stay those of the first fit; the first
    fit's test metrics are kept as `test_no_refit`. The refit metrics are logged to the same MLflow run
    as `final/refit/...`. Per-user values follow the metrics (the first fit's for val and test_no_refit).
    """
    import mlflow

    from explorec.data.loading import load_dataset
    from explorec.encoders.text import item_text_embeddings
    from explorec.evaluation.targets import evaluate_per_user, evaluation_targets, flat_metrics, user_sample
    from explorec.models.fit import refit_two_tower
    from explorec.tracking.store import metric_dict

    dataset = load_dataset(cfg)
    refit = refit_two_tower(dataset, item_text_embeddings(dataset, cfg), cfg, epochs=epochs)
    after_validation = [target for target in evaluation_targets(dataset) if target.name != "val"]
    scored, scored_per_user = evaluate_per_user(
        refit,
        dataset,
        batch_size=cfg.trainer.eval_batch_size,
        targets=after_validation,
        sample=user_sample(cfg.evaluation),
    )
    client = mlflow.MlflowClient()
    logged = {**metric_dict(flat_metrics(scored), prefix="final/refit/"), "time/refit_s": refit.fit_time_s}
    for key, value in logged.items():
        client.log_metric(run_id, key, value)
    client.log_param(run_id, "benchmark.refit_epochs", epochs)
    first_fit = {"val": "val", "test": "test_no_refit"}
    kept = {first_fit[name]: values for name, values in per_user.items() if name in first_fit}
    merged = {"val": metrics["val"], **scored, "test_no_refit": metrics["test"]}
    return merged, {**kept, **scored_per_user}, refit.fit_time_s


def paired_comparisons(
    results: Sequence[ModelResult], *, baselines: Sequence[str], evaluation: str = "test"
) -> dict[str, Any]:
    """Return each non-baseline model minus each baseline, then minus each later non-baseline model.

    E.g. two_tower[minilm] − ease, …, then two_tower[minilm] − two_tower[none], on `evaluation`.

    The unit is the user: per-user `PAIRED_METRIC` differences get a 95% paired t interval and a p-value,
    Holm-adjusted across every row. Only users both models were scored on count.
    """
    from explorec.evaluation.statistics import holm_adjust, paired_difference
    from explorec.evaluation.targets import PAIRED_METRIC

    scored = [result for result in results if evaluation in result.per_user]
    references = [result for result in scored if result.name in baselines]
    candidates = [result for result in scored if result.name not in baselines]
    pairs = [(candidate, reference) for candidate in candidates for reference in references]
    pairs += [(first, second) for index, first in enumerate(candidates) for second in candidates[index + 1 :]]
    rows = []
    for candidate, reference in pairs:
        mine, theirs = aligned_values(candidate.per_user[evaluation], reference.per_user[evaluation])
        difference = paired_difference(treatment=mine, control=theirs)
        rows.append(
            {
                "model": candidate.name,
                "versus": reference.name,
                "mean_difference": difference.mean,
                "ci_low": difference.ci_low,
                "ci_high": difference.ci_high,
                "p_value": difference.p_value,
                "n_users": difference.n_pairs,
            }
        )
    if rows:
        adjusted = holm_adjust(p_values=np.array([row["p_value"] for row in rows]))
        for row, p_holm in zip(rows, adjusted, strict=True):
            row["p_holm"] = float(p_holm)
    return {"evaluation": evaluation, "metric": PAIRED_METRIC, "rows": rows}


def paired_metrics(paired: dict[str, Any]) -> dict[str, float]:
    """Return the paired rows as MLflow metrics, e.g. `paired/two_tower_minilm-ease/ndcg_at_10_difference`."""
    from explorec.tracking.store import metric_name

    def plain(model: str) -> str:
        return model.replace("[", "_").replace("]", "")

    metrics = {}
    for row in paired["rows"]:
        prefix = f"paired/{plain(row['model'])}-{plain(row['versus'])}/{metric_name(paired['metric'])}"
        for suffix, key in PAIRED_METRIC_FIELDS.items():
            metrics[f"{prefix}_{suffix}"] = float(row[key])
    return metrics


def aligned_values(first: PerUserValues, second: PerUserValues) -> tuple[np.ndarray, np.ndarray]:
    """Return both models' values on the users both were scored on (finite in both), in user order."""
    common, first_at, second_at = np.intersect1d(first.users, second.users, return_indices=True)
    mine, theirs = first.values[first_at], second.values[second_at]
    finite = np.isfinite(mine) & np.isfinite(theirs)
    if common.size == 0 or not finite.any():
        raise ValueError("the two models share no evaluated user: nothing to pair")
    return mine[finite], theirs[finite]


def two_tower_config(cfg: ExplorecConfig, encoder: str) -> tuple[ExplorecConfig, list[str]]:
    """Return the two-tower's config for one encoder, with the split's `benchmark.two_tower_overrides`.

    The overrides (dotted `key=value` strings, chosen on validation for that split) are merged on top of
    the composed config; they are returned so that the comparison table can show them.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from explorec.config import from_dict, to_dict
    from explorec.config.compose import validate_values
    from explorec.errors import ConfigError
    from explorec.pipeline.config import validate_choices

    chosen = _with_encoder(cfg, encoder)
    overrides = list(cfg.benchmark.two_tower_overrides.get(cfg.split.name, []))
    if not overrides:
        return chosen, []
    try:
        merged = OmegaConf.merge(OmegaConf.create(to_dict(chosen)), OmegaConf.from_dotlist(overrides))
        result = from_dict(OmegaConf.to_container(merged))  # type: ignore[arg-type]
    except OmegaConfBaseException as error:
        raise ConfigError(f"benchmark.two_tower_overrides.{cfg.split.name}: {error}") from error
    validate_values(result)
    validate_choices(result)
    return result, overrides


def _with_encoder(cfg: ExplorecConfig, encoder: str) -> ExplorecConfig:
    """Return a copy of the config whose encoder is the `conf/encoder/<encoder>.yaml` option."""
    from explorec.config import compose

    chosen = compose([f"encoder={encoder}"]).encoder
    runtime = {"device": cfg.encoder.device, "num_threads": cfg.encoder.num_threads}
    return replace(cfg, encoder=replace(chosen, cache_dir=cfg.encoder.cache_dir, **runtime))
