"""The two-tower LightningModule: dot product / learned temperature; in-batch softmax with logQ correction
or a softmax over the full catalogue."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch
from lightning import pytorch as lp

from explorec.config import ModelConfig
from explorec.evaluation.harness import full_ranking_evaluate
from explorec.evaluation.scoring import ScoreMatrix
from explorec.models.global_batch import global_mean_share
from explorec.models.losses import full_softmax_loss, in_batch_softmax_loss
from explorec.models.optimizers import LazyAdamW, sparsify_large_embeddings
from explorec.models.towers import ItemTower, UserTower

MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 1.0
VALIDATION_KS = (10, 20)
LOSSES = ("sampled_softmax", "full_softmax")


class TwoTowerModule(lp.LightningModule):
    """Trains an item and a user tower; validates by exact full ranking over all items (train masked).

    With `input_item_tower` the user tower reads the history through that second item tower (input
    representations) while items are scored with `item_tower` (output representations), as in models
    that untie input and output item embeddings; without it one item tower serves both sides.

    With `model_cfg.ema_decay` > 0 an exponential moving average of the parameters is kept after every
    optimizer step (bias-corrected early on: the decay is min(ema_decay, (1 + n) / (10 + n)) after n steps).
    Validation scores the averaged weights, checkpoints hold them, and they replace the trained weights when
    training ends, so the model a fit or a refit returns is the average, not the last step's noisy iterate.
    """

    def __init__(
        self,
        item_tower: ItemTower,
        user_tower: UserTower,
        *,
        item_log_frequency: torch.Tensor,
        model_cfg: ModelConfig,
        input_item_tower: ItemTower | None = None,
    ) -> None:
        super().__init__()
        if model_cfg.loss not in LOSSES:
            raise ValueError(f"model loss {model_cfg.loss!r} is not one of {LOSSES} (resolve 'auto' first)")
        self.save_hyperparameters({"model": asdict(model_cfg)})
        self.item_tower = item_tower
        self.user_tower = user_tower
        self.input_item_tower = input_item_tower
        self.model_cfg = model_cfg
        self.register_buffer("item_log_frequency", item_log_frequency.to(torch.float32))
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(model_cfg.initial_temperature)))
        self._validation_sums: dict[str, float] = {}
        self._cached_item_vectors: torch.Tensor | None = None
        if not 0.0 <= model_cfg.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1); got {model_cfg.ema_decay}")
        self._ema: list[torch.Tensor] | None = None
        self._ema_updates = 0
        self._ema_swapped = False

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return int(self.item_log_frequency.shape[0])

    @property
    def temperature(self) -> torch.Tensor:
        """Return the learned softmax temperature, clamped to [MIN_TEMPERATURE, MAX_TEMPERATURE]."""
        return self.log_temperature.clamp(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)).exp()

    def user_vectors(
        self, batch: dict[str, torch.Tensor], item_vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return user vectors [B, d] of a batch with `history`, `padding_mask` and `user_idx`.

        `item_vectors` [n_items, d], when given, are used for the history instead of a new item-tower pass
        (not with a separate input item tower, which always reads the history itself).
        """
        history, padding = batch["history"], batch["padding_mask"]
        if item_vectors is None or self.input_item_tower is not None:
            unique_items, index = torch.unique(history, return_inverse=True)
            tower = self.item_tower if self.input_item_tower is None else self.input_item_tower
            table = tower(unique_items)
        else:
            table, index = item_vectors, history
        user_idx = batch["user_idx"] if self.user_tower.user_embedding is not None else None
        if self.user_tower.pooling == "mean":
            counts = history_counts(index, padding, len(table), dtype=table.dtype)
            return self.user_tower.from_sum(counts @ table, counts.sum(dim=1), user_idx)
        return self.user_tower(table[index], padding, user_idx)

    @torch.no_grad()
    def all_item_vectors(self, chunk_size: int = 8192) -> torch.Tensor:
        """Return the vectors of every item [n_items, d] (in the tower's current train/eval mode)."""
        device = self.item_log_frequency.device
        chunks = [
            self.item_tower(torch.arange(start, min(start + chunk_size, self.n_items), device=device))
            for start in range(0, self.n_items, chunk_size)
        ]
        return torch.cat(chunks)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Return the batch's loss (sampled or full-catalogue softmax) and log it as train/loss.

        Under DDP the in-batch negatives are the global batch's and each process returns its share of the
        global mean loss, so training matches one process that sees the global batch.
        """
        if self.model_cfg.loss == "full_softmax":
            loss, n_targets = global_mean_share(*self._full_softmax_loss(batch))
        else:
            users, targets = self._training_pairs(batch)
            loss, n_targets = in_batch_softmax_loss(
                users,
                targets,
                self.item_tower,
                temperature=self.temperature,
                item_log_frequency=self.item_log_frequency,
                logq_correction=self.model_cfg.logq_correction,
                extra_uniform_negatives=self.model_cfg.extra_uniform_negatives,
            )
        # under DDP each process's share averages (sync_dist) to the global batch's mean; the temperature is
        # the same on every process
        logged = {"batch_size": n_targets, "sync_dist": True}
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, **logged)
        self.log("train/temperature", self.temperature.detach(), on_epoch=True, **logged)
        return loss

    def _full_softmax_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Return the full-catalogue softmax loss of a batch and its number of targets.

        Held-out batches: each user's input items are excluded from its softmax, so the user must put its
        mass on the items it does not show (evaluation masks the train items likewise). Next-item batches:
        every window position's target against every item. Items never seen in training are excluded as
        well: nothing says they are negatives (in-batch sampling never draws them either), and pushing
        them down would teach the item tower that "no ID" means "do not recommend" (cold items).
        """
        items = self.item_tower(torch.arange(self.n_items, device=self.item_log_frequency.device))
        unseen = ~self.item_tower.known_items
        if "held_out" in batch:
            mask = batch["held_out_mask"]
            users = self.user_vectors(batch, item_vectors=items)
            exclude = history_counts(batch["history"], batch["padding_mask"], self.n_items) > 0
            loss = full_softmax_loss(
                users, items, batch["held_out"], mask, temperature=self.temperature, exclude=exclude | unseen
            )
            return loss, int(mask.sum())
        users, targets = self._training_pairs(batch)
        exclude = unseen.expand(len(targets), -1)
        loss = full_softmax_loss(
            users, items, targets[:, None], temperature=self.temperature, exclude=exclude
        )
        return loss, len(targets)

    def _training_pairs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (user vector, target item) pairs: per window position, or per held-out item."""
        if "held_out" in batch:
            mask = batch["held_out_mask"]
            user_vectors = self.user_vectors(batch)
            rows = torch.arange(len(mask), device=mask.device).unsqueeze(1).expand_as(mask)[mask]
            return user_vectors[rows], batch["held_out"][mask]
        history = batch["history"]
        unique_items, inverse = torch.unique(history, return_inverse=True)
        history_vectors = self.item_tower(unique_items)[inverse]
        user_idx = batch["user_idx"] if self.user_tower.user_embedding is not None else None
        position_vectors = self.user_tower.encode_positions(history_vectors, batch["padding_mask"], user_idx)
        target_mask = batch["target_mask"]
        return position_vectors[target_mask], batch["targets"][target_mask]

    def on_train_batch_end(self, outputs: object, batch: object, batch_idx: int) -> None:
        """Move the parameters' moving average towards the weights after this step (with ema_decay > 0)."""
        if self.model_cfg.ema_decay <= 0:
            return
        parameters = [parameter.detach() for parameter in self.parameters()]
        if self._ema is None:
            self._ema = [parameter.clone() for parameter in parameters]
        else:
            self._ema_updates += 1
            decay = min(self.model_cfg.ema_decay, (1 + self._ema_updates) / (10 + self._ema_updates))
            for average, parameter in zip(self._ema, parameters, strict=True):
                average.lerp_(parameter, 1.0 - decay)

    def _swap_ema(self) -> None:
        """Exchange the parameters with their moving average (a no-op before the first average)."""
        if self._ema is None:
            return
        with torch.no_grad():
            for parameter, average in zip(self.parameters(), self._ema, strict=True):
                current = parameter.detach().clone()
                parameter.copy_(average)
                average.copy_(current)
        self._ema_swapped = not self._ema_swapped

    def on_train_end(self) -> None:
        """Leave the moving average in the parameters (with ema_decay > 0): that is the trained model."""
        if self._ema is not None and not self._ema_swapped:
            self._swap_ema()
        self._ema = None
        self._ema_swapped = False

    def on_save_checkpoint(self, checkpoint: dict[str, object]) -> None:
        """Save the moving average (with ema_decay > 0) as the checkpoint's weights."""
        if self._ema is None or self._ema_swapped:
            return
        state = checkpoint["state_dict"]
        assert isinstance(state, dict)
        for (name, _), average in zip(self.named_parameters(), self._ema, strict=True):
            state[name] = average.detach().clone()

    def on_validation_epoch_start(self) -> None:
        """Compute every item's vector once and reset the metric sums (scoring the moving average if any)."""
        if self._ema is not None and not self._ema_swapped:
            self._swap_ema()
        self._cached_item_vectors = self.all_item_vectors()
        self._validation_sums = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Score every item for the batch's users and add their full-ranking metrics to the epoch sums."""
        assert self._cached_item_vectors is not None
        scores = (self.user_vectors(batch) @ self._cached_item_vectors.T).float().cpu().numpy()
        users = batch["user_idx"].cpu().numpy()
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        metrics = full_ranking_evaluate(
            ScoreMatrix(scores),
            targets=datamodule.validation_targets[users],
            exclude=datamodule.validation_exclude[users],
            ks=VALIDATION_KS,
            batch_size=len(users),
        )
        count = metrics.pop("n_users")
        for key, value in metrics.items():
            self._validation_sums[key] = self._validation_sums.get(key, 0.0) + value * count
        self._validation_sums["n_users"] = self._validation_sums.get("n_users", 0.0) + count

    def on_validation_epoch_end(self) -> None:
        """Log the user-averaged validation metrics as val/<metric> (summed over processes under DDP)."""
        keys = sorted(self._validation_sums)
        sums = torch.tensor(
            [self._validation_sums[key] for key in keys], dtype=torch.float64, device=self.device
        )
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        totals = dict(zip(keys, sums.tolist(), strict=True))
        n_users = max(totals.pop("n_users", 0.0), 1.0)
        for key, value in totals.items():
            # the same on every process (summed above): averaging them changes nothing
            self.log(f"val/{key}", value / n_users, prog_bar=key == "ndcg@10", sync_dist=True)
        self._cached_item_vectors = None
        if self._ema_swapped:
            self._swap_ema()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Return AdamW over every parameter; lazy (row-sparse) on ID tables of `sparse_embeddings_from` rows.

        One process only: under DDP every table stays dense (NCCL reduces no sparse gradients).
        """
        settings = {"lr": self.model_cfg.learning_rate, "weight_decay": self.model_cfg.weight_decay}
        if self.trainer.world_size == 1 and sparsify_large_embeddings(
            self, self.model_cfg.sparse_embeddings_from
        ):
            return LazyAdamW(self.parameters(), **settings)
        return torch.optim.AdamW(self.parameters(), **settings)


def history_counts(
    history: torch.Tensor, padding_mask: torch.Tensor, n_columns: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Return [B, n_columns] counts of each column index among a row's non-padded `history` entries."""
    counts = torch.zeros(len(history), n_columns, dtype=dtype, device=history.device)
    return counts.scatter_add_(1, history, (~padding_mask).to(dtype))


def scores_as_numpy(user_vectors: torch.Tensor, item_vectors: torch.Tensor) -> np.ndarray:
    """Return the dot-product scores [users, items] as a float32 numpy array."""
    return (user_vectors @ item_vectors.T).float().cpu().numpy()
