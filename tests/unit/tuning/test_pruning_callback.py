"""The pruning callback: prunes a weak trial after an early epoch, never after the trial's last epoch."""

from __future__ import annotations

import optuna
import pytest
import torch
from lightning import pytorch as lp
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from explorec.models.fit import MONITOR
from explorec.tuning.objective import PruningBeforeTheLastEpoch


class ConstantScore(lp.LightningModule):
    """A one-parameter module whose validation metric is always 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Pull the weight towards 1."""
        return (self.weight - 1.0).pow(2).sum()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        """Log the constant metric the callback monitors."""
        self.log(MONITOR, 0.5)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Plain SGD."""
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        """Two rows."""
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)

    def val_dataloader(self) -> DataLoader:
        """Two rows."""
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)


def fit_under(trial: optuna.Trial, max_epochs: int) -> None:
    """Fit the constant module for `max_epochs` with the pruning callback watching `trial`."""
    trainer = lp.Trainer(
        max_epochs=max_epochs,
        callbacks=[PruningBeforeTheLastEpoch(trial, monitor=MONITOR)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(ConstantScore())


def test_a_weak_trial_is_pruned_early_but_a_finished_one_is_kept() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.0))

    early = study.ask()
    with pytest.raises(optuna.TrialPruned):
        fit_under(early, max_epochs=3)
    study.tell(early, state=TrialState.PRUNED)

    last = study.ask()
    fit_under(last, max_epochs=1)  # the pruner would prune after epoch 0, but that is the last epoch
    study.tell(last, 0.5)

    pruned, kept = study.trials
    assert pruned.state == TrialState.PRUNED and pruned.intermediate_values == {0: 0.5}
    assert kept.state == TrialState.COMPLETE and kept.intermediate_values == {0: 0.5}
