"""Training progress as plain lines on stderr (a Lightning callback over `explorec.progress.Progress`).

Used instead of Lightning's bar when the output is not an interactive terminal: the bar's frames are
carriage-return redraws that a log shows only as a final frame. One `Progress` counts the batches of the
whole epoch budget (early stopping may end sooner), so its throttle (one line per interval, 30 s by
default) holds across epochs and validation.
"""

from __future__ import annotations

import math
from typing import Any

from lightning import pytorch as lp
from lightning.pytorch.callbacks import Callback

from explorec.progress import Progress

LOSS = "train/loss_step"
EPOCH_LOSS = "train/loss_epoch"
MONITORED = "val/ndcg@10"


def _metric(trainer: lp.Trainer, key: str) -> float | None:
    """Return a logged metric of the trainer as a float (None when absent or not finite)."""
    value = trainer.callback_metrics.get(key)
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _batches_per_epoch(trainer: lp.Trainer) -> int | None:
    """Return the training batches of one epoch (None when Lightning cannot count them)."""
    batches = trainer.num_training_batches
    return int(batches) if isinstance(batches, int) or (batches and math.isfinite(batches)) else None


class ProgressLines(Callback):
    """Print training progress (epoch, batch, share of the budget, ETA, loss, val NDCG@10) on stderr."""

    def __init__(self, phase: str = "training", interval: float | None = None) -> None:
        self.phase, self.interval = phase, interval
        self.progress: Progress | None = None
        self.batches: int | None = None
        self.best: tuple[float, int] | None = None

    def on_train_start(self, trainer: lp.Trainer, pl_module: lp.LightningModule) -> None:
        """Open the phase: the epoch budget and the batches per epoch."""
        self.batches = _batches_per_epoch(trainer)
        total = self.batches * trainer.max_epochs if self.batches and trainer.max_epochs else None
        self.progress = Progress(self.phase, total, unit="batches", interval=self.interval)
        per_epoch = f"{self.batches} batches each" if self.batches else "batches per epoch unknown"
        self.progress.start(f"epochs: up to {trainer.max_epochs}, {per_epoch}")

    def _where(self, trainer: lp.Trainer) -> str:
        """Say which epoch of the budget is running."""
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_batch_end(
        self, trainer: lp.Trainer, pl_module: lp.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Count a batch; a line (with the running loss) when the interval has passed."""
        if self.progress is None:
            return
        loss = _metric(trainer, LOSS)
        detail = self._where(trainer) + (f", loss {loss:.4f}" if loss is not None else "")
        self.progress.advance(1, detail)

    def on_validation_batch_end(
        self,
        trainer: lp.Trainer,
        pl_module: lp.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """A line while a long validation runs (ranking the whole catalogue takes a while)."""
        if self.progress is not None and not trainer.sanity_checking:
            self.progress.tick(f"{self._where(trainer)}, validating batch {batch_idx + 1}")

    def on_train_epoch_end(self, trainer: lp.Trainer, pl_module: lp.LightningModule) -> None:
        """Remember the best validation NDCG@10; a line with the epoch's loss and NDCG when it is time."""
        if self.progress is None:
            return
        score = _metric(trainer, MONITORED)
        if score is not None and (self.best is None or score > self.best[0]):
            self.best = (score, trainer.current_epoch + 1)
        if self.batches:  # keep the count exact when the last batch of an epoch was short-circuited
            self.progress.done = self.batches * (trainer.current_epoch + 1)
        self.progress.tick(self._epoch_detail(trainer, score))

    def _epoch_detail(self, trainer: lp.Trainer, score: float | None) -> str:
        """Say which epoch ended, its mean loss and its validation NDCG@10."""
        loss = _metric(trainer, EPOCH_LOSS)
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} ended"]
        if loss is not None:
            parts.append(f"train loss {loss:.4f}")
        if score is not None:
            parts.append(f"val NDCG@10 {score:.4f}")
        return ", ".join(parts)

    def on_train_end(self, trainer: lp.Trainer, pl_module: lp.LightningModule) -> None:
        """Close the phase: epochs run and the best validation NDCG@10."""
        if self.progress is None:
            return
        detail = f"epochs run: {trainer.current_epoch}"
        if self.best is not None:
            detail += f", best val NDCG@10 {self.best[0]:.4f} at epoch {self.best[1]}"
        self.progress.finish(detail)
