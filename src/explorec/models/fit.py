"""`fit_two_tower`: the one training function the train flow and the Optuna objective both call."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import pytorch as lp
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy, Strategy

from explorec.config import ExplorecConfig, ModelConfig, TrainerConfig
from explorec.data.processed import ProcessedDataset
from explorec.data.splits import split_method
from explorec.evaluation.scoring import TRAIN_HISTORY
from explorec.models.data import (
    TwoTowerDataModule,
    UserHistories,
    genre_multi_hot,
    item_log_frequency,
)
from explorec.models.distributed import FixedPlace, KeepRandomState, Place, ddp_job
from explorec.models.global_batch import global_sum
from explorec.models.progress_lines import ProgressLines
from explorec.models.towers import ItemTower, UserTower
from explorec.models.two_tower import TwoTowerModule, scores_as_numpy
from explorec.progress import progress_style, quiet_libraries, single_lightning_output

MONITOR = "val/ndcg@10"
COLLECTIVE_TIMEOUT = timedelta(minutes=10)
"""How long a DDP rank waits for the others in one collective (a rank that died ends the job after it)."""


class TrainingMonitor(Callback):
    """Log train/epoch_time_s and train/examples_per_sec, and keep every epoch's logged metrics."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._started = 0.0
        self._examples = 0

    def on_train_epoch_start(self, trainer: lp.Trainer, pl_module: lp.LightningModule) -> None:
        """Start the epoch clock."""
        self._started = time.perf_counter()
        self._examples = 0

    def on_train_batch_end(
        self, trainer: lp.Trainer, pl_module: lp.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count the batch's (history, target) examples."""
        self._examples += int(batch["held_out_mask" if "held_out" in batch else "target_mask"].sum())

    def on_train_epoch_end(self, trainer: lp.Trainer, pl_module: lp.LightningModule) -> None:
        """Log the epoch's time and throughput (of every process under DDP); keep the epoch's metrics."""
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        examples = global_sum(self._examples)  # under DDP: the examples of every process
        timing = {"train/epoch_time_s": elapsed, "train/examples_per_sec": examples / elapsed}
        for key, value in timing.items():  # under DDP: averaged over the processes
            pl_module.log(key, value, on_epoch=True, sync_dist=True)
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        self.epochs.append({"epoch": float(trainer.current_epoch), **metrics, **timing})


@dataclass
class FitResult:
    """The best two-tower model of a fit (restored from the best checkpoint) and ways to score with it."""

    model: TwoTowerModule
    dataset: ProcessedDataset
    best_score: float
    best_metrics: dict[str, float]
    epochs_run: int
    best_checkpoint: Path | None
    fit_time_s: float
    history: list[dict[str, float]] = field(default_factory=list)

    def item_vectors(self) -> np.ndarray:
        """Return the vectors of every item [n_items, d] (unit length unless normalize_items is off)."""
        self.model.eval()
        return self.model.all_item_vectors().float().cpu().numpy()

    def user_vectors(
        self, user_idx: np.ndarray | None = None, history_splits: Sequence[str] = ("train",)
    ) -> np.ndarray:
        """Return the L2-normalised user vectors [n, d] from the users' histories in `history_splits`."""
        users = np.arange(self.dataset.n_users) if user_idx is None else np.asarray(user_idx, dtype=np.int64)
        sequences = self.dataset.sequences(*history_splits)
        histories = UserHistories(sequences, users, self.model.user_tower.max_history)
        self.model.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(users), 1024):
                batch = histories.collate(range(start, min(start + 1024, len(users))))
                batch = {key: value.to(self.model.device) for key, value in batch.items()}
                chunks.append(self.model.user_vectors(batch).float().cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.model.model_cfg.embedding_dim))

    def score(self, users: np.ndarray, history_splits: Sequence[str] = TRAIN_HISTORY) -> np.ndarray:
        """Return dot-product scores [n_users, n_items] (higher = better); nothing is masked (a `Scorer`)."""
        vectors = torch.from_numpy(self.user_vectors(users, history_splits))
        return scores_as_numpy(vectors, torch.from_numpy(self.item_vectors()))


def resolve_model_config(model_cfg: ModelConfig, split_name: str | None = None) -> ModelConfig:
    """Return the model config with every `auto` choice made for the split.

    Chronological splits (leave_last_out, temporal_ratio, or no split named): next-item windows, causal
    attention over the
    last N items, in-batch sampled softmax with logQ. Random splits: held-out items, a mean-pooled set
    model of the whole history, and a softmax over the full catalogue (chosen on ML-100K validation).
    """
    objective = model_cfg.training_objective
    if objective == "auto":
        chronological = split_name is None or split_method(split_name).chronological
        objective = "next_item" if chronological else "held_out"
    set_style = objective == "held_out"
    loss = model_cfg.loss if model_cfg.loss != "auto" else "full_softmax" if set_style else "sampled_softmax"
    pooling = model_cfg.user_pooling
    if pooling == "auto":
        pooling = "mean" if set_style else "attention"
    return replace(model_cfg, training_objective=objective, loss=loss, user_pooling=pooling)


def build_two_tower(
    dataset: ProcessedDataset, text_embeddings: np.ndarray | None, model_cfg: ModelConfig
) -> TwoTowerModule:
    """Build an untrained two-tower model for `dataset` (text embeddings: [n_items, t] or None).

    `auto` choices left in `model_cfg` are made as for a chronological split (see `resolve_model_config`).
    """
    model_cfg = resolve_model_config(model_cfg)
    if text_embeddings is not None and text_embeddings.shape[0] != dataset.n_items:
        raise ValueError(
            f"text_embeddings has {text_embeddings.shape[0]} rows; the catalogue has {dataset.n_items}"
        )
    items = dataset.items.sort_values("item_idx")
    genres = genre_multi_hot(items["genres"]) if model_cfg.use_genres and "genres" in items else None
    known = np.zeros(dataset.n_items, dtype=bool)
    known[dataset.train["item_idx"].to_numpy()] = True
    item_tower = _item_tower(
        dataset.n_items, known, text_embeddings, genres, model_cfg, normalize=model_cfg.normalize_items
    )
    user_tower = UserTower(
        embedding_dim=model_cfg.embedding_dim,
        history_length=model_cfg.history_length,
        attention_heads=model_cfg.attention_heads,
        attention_layers=model_cfg.attention_layers,
        mlp_layers=model_cfg.mlp_layers,
        dropout=model_cfg.dropout,
        n_users=dataset.n_users if model_cfg.use_user_id else None,
        pooling=model_cfg.user_pooling,
    )
    input_tower = None
    if model_cfg.separate_input_items:
        unit_inputs = model_cfg.normalize_input_items
        input_tower = _item_tower(
            dataset.n_items, known, text_embeddings, genres, model_cfg, normalize=unit_inputs
        )
    log_frequency = torch.from_numpy(item_log_frequency(dataset.train, dataset.n_items))
    return TwoTowerModule(
        item_tower,
        user_tower,
        item_log_frequency=log_frequency,
        model_cfg=model_cfg,
        input_item_tower=input_tower,
    )


def _item_tower(
    n_items: int,
    known: np.ndarray,
    text_embeddings: np.ndarray | None,
    genres: np.ndarray | None,
    model_cfg: ModelConfig,
    *,
    normalize: bool = True,
) -> ItemTower:
    """Return an untrained item tower over the catalogue (`known`: items seen in training)."""
    return ItemTower(
        n_items=n_items,
        embedding_dim=model_cfg.embedding_dim,
        known_items=torch.from_numpy(known),
        text_embeddings=None if text_embeddings is None else torch.from_numpy(np.asarray(text_embeddings)),
        genre_features=None if genres is None else torch.from_numpy(genres),
        mlp_layers=model_cfg.mlp_layers,
        dropout=model_cfg.dropout,
        id_dropout=model_cfg.id_dropout,
        normalize=normalize,
    )


def load_weights(model: TwoTowerModule, checkpoint: Path) -> TwoTowerModule:
    """Load a Lightning checkpoint's weights into `model` (weights_only=True: no pickled code runs)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    return model


def training_objective(cfg: ExplorecConfig) -> str:
    """Return model.training_objective if set, else next_item for chronological splits, else held_out."""
    return resolve_model_config(cfg.model, cfg.split.name).training_objective


class _NoAdvertisement(logging.Filter):
    """Drop Lightning's "💡 Tip" log lines (a cloud-logger advertisement printed by every Trainer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the tip."""
        return not str(record.msg).startswith("💡 Tip")


def _hide_lightning_tips() -> None:
    """Attach the tip filter to Lightning's rank-zero logger once."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(existing, _NoAdvertisement) for existing in rank_zero.filters):
        rank_zero.addFilter(_NoAdvertisement())


def progress_settings(enable_progress_bar: bool, phase: str = "training") -> tuple[bool, list[Callback]]:
    """Return (show Lightning's bar, extra callbacks): the bar on a terminal, progress lines in a log.

    Also quiets the libraries and makes each Lightning log line print once (see `explorec.progress`).
    """
    quiet_libraries()
    single_lightning_output()
    _hide_lightning_tips()
    if not enable_progress_bar or progress_style() == "off":
        return False, []
    if progress_style() == "bar":
        return True, []
    return False, [ProgressLines(phase)]


def training_strategy(trainer_cfg: TrainerConfig, environment: FixedPlace | None) -> str | Strategy:
    """Return the Lightning strategy: DDP over the given ranks, or the configured one for one process."""
    if environment is None:
        return trainer_cfg.strategy
    return DDPStrategy(cluster_environment=environment, timeout=COLLECTIVE_TIMEOUT)


def build_trainer(
    trainer_cfg: TrainerConfig,
    *,
    callbacks: Sequence[Callback],
    logger: Any,
    environment: FixedPlace | None = None,
) -> lp.Trainer:
    """Return a Lightning Trainer from TrainerConfig (CPU, GPU or DDP) with early stopping on val/ndcg@10.

    Under DDP (`environment` given) every rank builds the same trainer; only rank 0 shows progress.
    """
    worker = environment is not None and environment.global_rank() != 0
    show_bar, progress = progress_settings(trainer_cfg.enable_progress_bar and not worker)
    stopping = EarlyStopping(monitor=MONITOR, mode="max", patience=trainer_cfg.early_stopping_patience)
    same_draws = [] if environment is None else [KeepRandomState()]
    return lp.Trainer(
        max_epochs=trainer_cfg.max_epochs,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes,
        strategy=training_strategy(trainer_cfg, environment),
        precision=trainer_cfg.precision,  # type: ignore[arg-type]
        deterministic=trainer_cfg.deterministic,
        fast_dev_run=trainer_cfg.fast_dev_run,
        check_val_every_n_epoch=trainer_cfg.check_val_every_n_epoch,
        enable_progress_bar=show_bar,
        callbacks=[*callbacks, *progress, stopping, *same_draws],
        logger=logger if logger is not None else False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        use_distributed_sampler=False,  # TwoTowerDataModule deals out the global batches itself
    )


def fit_two_tower(
    dataset: ProcessedDataset,
    text_embeddings: np.ndarray | None,
    cfg: ExplorecConfig,
    *,
    callbacks: Sequence[Callback] = (),
    logger: Any = None,
    checkpoint_dir: Path,
    place: Place | None = None,
) -> FitResult:
    """Train the two-tower model with early stopping on val/ndcg@10 and return the best checkpoint's model.

    Under DDP (trainer.devices × trainer.num_nodes > 1) the caller is rank 0 and the other ranks start on
    the same inputs (`explorec.models.distributed`); a worker rank passes its `place` (and no logger).
    """
    single_lightning_output()  # before the first Lightning line (the seed's)
    lp.seed_everything(cfg.seed, workers=True)
    torch.set_num_threads(cfg.trainer.num_threads)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    model = build_two_tower(dataset, text_embeddings, model_cfg)
    datamodule = _datamodule(dataset, cfg, model_cfg, model)
    checkpoint = ModelCheckpoint(
        dirpath=Path(checkpoint_dir),
        filename="best",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
        save_weights_only=True,
        auto_insert_metric_name=False,
    )
    monitor = TrainingMonitor()
    job = {"kind": "fit", "checkpoint_dir": str(checkpoint_dir)}
    with ddp_job(dataset, text_embeddings, cfg, job=job, place=place) as environment:
        trainer = build_trainer(
            cfg.trainer, callbacks=[monitor, checkpoint, *callbacks], logger=logger, environment=environment
        )
        started = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        fit_time = time.perf_counter() - started
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    if best_path is not None and trainer.global_rank == 0:  # only rank 0 goes on (and has the file)
        model = load_weights(build_two_tower(dataset, text_embeddings, model_cfg), best_path)
    best_metrics = _best_epoch(monitor.epochs)
    return FitResult(
        model=model.eval(),
        dataset=dataset,
        best_score=best_metrics.get(MONITOR, math.nan),
        best_metrics=best_metrics,
        epochs_run=trainer.current_epoch,
        best_checkpoint=best_path,
        fit_time_s=fit_time,
        history=monitor.epochs,
    )


def _datamodule(
    dataset: ProcessedDataset, cfg: ExplorecConfig, model_cfg: ModelConfig, model: TwoTowerModule
) -> TwoTowerDataModule:
    """Return the training data of `dataset` as `model` (whole-history or windowed) and the config want it."""
    return TwoTowerDataModule(
        dataset,
        history_length=model_cfg.history_length,
        batch_size=cfg.trainer.batch_size,
        eval_batch_size=cfg.trainer.eval_batch_size,
        num_workers=cfg.trainer.num_workers,
        objective=model_cfg.training_objective,
        held_out_fraction=model_cfg.held_out_fraction,
        whole_history=model.user_tower.max_history is None,
    )


def refit_two_tower(
    dataset: ProcessedDataset,
    text_embeddings: np.ndarray | None,
    cfg: ExplorecConfig,
    *,
    epochs: int,
    place: Place | None = None,
) -> FitResult:
    """Train anew on train + validation for a fixed number of epochs (chosen on validation); no validation.

    The returned model scores users from any history splits of the original `dataset`, as a fit does.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1; got {epochs}")
    single_lightning_output()  # before the first Lightning line (the seed's)
    lp.seed_everything(cfg.seed, workers=True)
    torch.set_num_threads(cfg.trainer.num_threads)
    merged = with_validation_in_train(dataset)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    model = build_two_tower(merged, text_embeddings, model_cfg)
    datamodule = _datamodule(merged, cfg, model_cfg, model)
    monitor = TrainingMonitor()
    job = {"kind": "refit", "epochs": epochs}
    with ddp_job(dataset, text_embeddings, cfg, job=job, place=place) as environment:
        worker = environment is not None and environment.global_rank() != 0
        show_bar, progress = progress_settings(
            cfg.trainer.enable_progress_bar and not worker, phase="refit on train + valid"
        )
        trainer = lp.Trainer(
            max_epochs=epochs,
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            num_nodes=cfg.trainer.num_nodes,
            strategy=training_strategy(cfg.trainer, environment),
            precision=cfg.trainer.precision,  # type: ignore[arg-type]
            deterministic=cfg.trainer.deterministic,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=show_bar,
            enable_model_summary=False,
            use_distributed_sampler=False,
            callbacks=[monitor, *progress, *([] if environment is None else [KeepRandomState()])],
            logger=False,
        )
        started = time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
    return FitResult(
        model=model.eval(),
        dataset=dataset,
        best_score=math.nan,
        best_metrics={},
        epochs_run=trainer.current_epoch,
        best_checkpoint=None,
        fit_time_s=time.perf_counter() - started,
        history=monitor.epochs,
    )


def with_validation_in_train(dataset: ProcessedDataset) -> ProcessedDataset:
    """Return the data set with the validation interactions moved into train (validation left empty)."""
    return replace(dataset, train=dataset.interactions("train", "valid"), valid=dataset.valid.iloc[:0])


def _best_epoch(epochs: list[dict[str, float]]) -> dict[str, float]:
    """Return the metrics of the epoch with the highest val/ndcg@10 (the first on ties; {} when none)."""
    scored = [epoch for epoch in epochs if MONITOR in epoch and not math.isnan(epoch[MONITOR])]
    return max(scored, key=lambda epoch: epoch[MONITOR]) if scored else {}
