"""The Optuna objective: suggest → map onto config → train and evaluate → serve slates → objective values.

`make_objective` is the only Optuna-aware code besides study setup (study.py). Everything a worker needs
that does not change between trials (dataset, text embeddings, tracking target) is loaded once into a
`TrialContext`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lightning.pytorch.callbacks import Callback
from optuna_integration import PyTorchLightningPruningCallback

from explorec.config import EncoderConfig, ExplorecConfig
from explorec.config.tuning import ParameterSpec, TuneConfig, flat_space
from explorec.data.processed import ProcessedDataset
from explorec.policies.registry import policy_class, policy_names
from explorec.policies.spec import PolicySpec
from explorec.tuning.served import served_metrics
from explorec.tuning.space import apply_trial

ACCURACY = "accuracy"
DIVERSITY = "diversity"


@dataclass
class TrialContext:
    """What every trial of one worker shares: base config and policy, data, vectors, MLflow target."""

    cfg: ExplorecConfig
    tune: TuneConfig
    policy: PolicySpec
    dataset: ProcessedDataset
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    diversity_vectors: np.ndarray | None
    embeddings_by_encoder: dict[str, np.ndarray | None] = field(default_factory=dict)

    def text_embeddings(self, cfg: ExplorecConfig) -> np.ndarray | None:
        """Return the item text embeddings of the trial's encoder (loaded once per encoder)."""
        from explorec.encoders.text import item_text_embeddings

        key = f"{cfg.encoder.name}:{cfg.encoder.model}"
        if key not in self.embeddings_by_encoder:
            self.embeddings_by_encoder[key] = item_text_embeddings(self.dataset, cfg)
        return self.embeddings_by_encoder[key]


def needs_text_vectors(tune: TuneConfig, policy: PolicySpec) -> bool:
    """Whether the study needs text vectors: ILD diversity, or a policy that explores in text space."""
    space = flat_space(tune.search_space)
    names = {policy.name, *(space["policy.name"].choices or [])} if "policy.name" in space else {policy.name}
    known = set(names) & set(policy_names())
    return tune.diversity_objective == "ild" or any(policy_class(name).uses_text_embeddings for name in known)


def diversity_item_vectors(dataset: ProcessedDataset, cfg: ExplorecConfig) -> np.ndarray:
    """Text embeddings that ILD is measured on: the configured encoder's, or the default encoder's for `none`.

    The same vectors serve every trial, so diversity stays comparable across trials whatever they train.
    """
    from explorec.encoders.text import item_text_embeddings

    encoder_cfg = cfg if cfg.encoder.name != "none" else dataclasses.replace(cfg, encoder=EncoderConfig())
    vectors = item_text_embeddings(dataset, encoder_cfg)
    assert vectors is not None
    return vectors


def load_context(
    cfg: ExplorecConfig, tune: TuneConfig, policy: PolicySpec, *, parent_run_id: str
) -> TrialContext:
    """Load the data, the diversity vectors and the tracking target once for a worker."""
    from explorec.data.loading import load_dataset
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    vectors = diversity_item_vectors(dataset, cfg) if needs_text_vectors(tune, policy) else None
    return TrialContext(
        cfg=cfg,
        tune=tune,
        policy=policy,
        dataset=dataset,
        tracking_uri=target.tracking_uri,
        experiment_id=target.experiment_id,
        parent_run_id=parent_run_id,
        diversity_vectors=vectors,
    )


def suggest_parameters(trial: Any, space: Mapping[str, ParameterSpec]) -> dict[str, Any]:
    """Ask the trial for one value per search dimension, named by its dotted config path."""
    values: dict[str, Any] = {}
    for path, spec in space.items():
        if spec.type == "categorical":
            values[path] = trial.suggest_categorical(path, list(spec.choices or []))
        elif spec.type == "int":
            step = int(spec.step) if spec.step else 1
            values[path] = trial.suggest_int(path, int(spec.low), int(spec.high), step=step, log=spec.log)
        else:
            values[path] = trial.suggest_float(path, spec.low, spec.high, step=spec.step, log=spec.log)
    return values


class EpochCounter(Callback):
    """Count the training epochs a fit started (a pruned fit stops inside its last one)."""

    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Count one more epoch."""
        self.epochs += 1


class PruningBeforeTheLastEpoch(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback that only reports after the last epoch.

    Pruning a trial that has run its whole epoch budget saves nothing and throws its result away; with
    Hyperband (rungs at 1, 3, 9 epochs of 10, steps counted from 0) that happened to whole trials.
    """

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Report and maybe prune, except after the final epoch, where the value is only reported."""
        final_epoch = pl_module.current_epoch >= trainer.max_epochs - 1
        if trainer.sanity_checking or not final_epoch:
            super().on_validation_end(trainer, pl_module)
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is not None and trainer.is_global_zero:
            self._trial.report(float(score), step=pl_module.current_epoch)


def objective_values(tune: TuneConfig, served: Mapping[str, float]) -> tuple[float, ...]:
    """Return (accuracy,) or (accuracy, diversity) from a trial's served-slate metrics."""
    accuracy = served[f"ndcg@{tune.slate_size}"]
    if tune.mode == "single":
        return (accuracy,)
    return accuracy, served[tune.diversity_objective]


def make_objective(context: TrialContext) -> Callable[[Any], float | tuple[float, ...]]:
    """Return objective(trial): one nested MLflow run per trial; pruned through Lightning in single mode."""
    import optuna
    from mlflow import MlflowClient

    from explorec.models.fit import MONITOR
    from explorec.tracking.runs import tracked_run
    from explorec.tuning.study import mark_worker
    from explorec.tuning.trial_run import log_trial_params, trial_run_tags

    tune, client = context.tune, MlflowClient(context.tracking_uri)

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        mark_worker(trial)
        suggestions = suggest_parameters(trial, flat_space(tune.search_space))
        cfg, policy = apply_trial(context.cfg, context.policy, suggestions)
        tags = trial_run_tags(
            cfg,
            data_fingerprint=context.dataset.fingerprint,
            tags={"optuna.study": tune.study_name, "optuna.trial": str(trial.number), "policy": policy.name},
        )
        with tracked_run(
            client,
            context.experiment_id,
            run_name=f"trial-{trial.number:03d}",
            tags=tags,
            parent_run_id=context.parent_run_id,
            killed_by=(optuna.TrialPruned,),
        ) as run_id:
            log_trial_params(client, run_id, cfg)
            trial.set_user_attr("mlflow_run_id", run_id)
            client.log_param(run_id, "policy.name", policy.name)
            client.log_param(run_id, "policy.exploration_rate", policy.exploration_rate)
            counter = EpochCounter()
            callbacks: list[Any] = [counter]
            if tune.mode == "single":
                callbacks.append(PruningBeforeTheLastEpoch(trial, monitor=MONITOR))
            try:
                values, metrics = _train_and_serve(context, cfg, policy, run_id, callbacks)
            except optuna.TrialPruned:
                _record_trial(client, run_id, {"train/epochs_run": counter.epochs}, state="PRUNED")
                trial.set_user_attr("epochs_run", counter.epochs)
                raise
            except BaseException:
                _record_trial(client, run_id, {"train/epochs_run": counter.epochs}, state="FAIL")
                raise
            trial.set_user_attr("epochs_run", counter.epochs)
            trial.set_user_attr(
                "metrics", {key: value for key, value in metrics.items() if math.isfinite(value)}
            )
            _record_trial(client, run_id, {**metrics, "train/epochs_run": counter.epochs}, state="COMPLETE")
        return values if len(values) > 1 else values[0]

    return objective


def _train_and_serve(
    context: TrialContext, cfg: ExplorecConfig, policy: PolicySpec, run_id: str, callbacks: list[Any]
) -> tuple[tuple[float, ...], dict[str, float]]:
    """Fit and evaluate one configuration, serve the validation users; return objectives and run metrics."""
    from explorec.evaluation.targets import flat_metrics
    from explorec.tracking.store import metric_dict
    from explorec.tuning.trial_run import fit_and_evaluate

    trained = fit_and_evaluate(
        cfg,
        context.dataset,
        context.text_embeddings(cfg),
        tracking_uri=context.tracking_uri,
        run_id=run_id,
        callbacks=callbacks,
    )
    resources = policy.vector_resources(
        item_vectors=trained.fit.item_vectors(), text_embeddings=context.diversity_vectors
    )
    if policy.policy_class.learns_cluster_transitions:
        train = context.dataset.sequences("train")
        resources.update(policy.history_resources(history_items=train.items, history_offsets=train.offsets))
    served = served_metrics(
        trained.fit,
        targets=context.dataset.matrix("valid"),
        exclude=context.dataset.matrix("train"),
        policy=policy.build(**resources),
        k=context.tune.slate_size,
        seed=context.tune.serving_seed,
        diversity_vectors=context.diversity_vectors,
    )
    metrics = {
        **metric_dict(flat_metrics(trained.results), prefix="final/"),
        **metric_dict(served, prefix="served/val/"),
    }
    return objective_values(context.tune, served), metrics


def _record_trial(client: Any, run_id: str, metrics: Mapping[str, float], *, state: str) -> None:
    """Log the trial's final metrics (finite ones) and tag its Optuna state into its MLflow run."""
    for key, value in metrics.items():
        if math.isfinite(float(value)):
            client.log_metric(run_id, key, float(value))
    client.set_tag(run_id, "optuna.state", state)
