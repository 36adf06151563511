"""Training and validation inputs of the two-tower model: chronological user sequences and item features.

Training examples are (the user's train history before an interaction, that interaction's item), one per
train interaction in time order, packed into windows of N + 1 consecutive items so that one causal pass of
the user tower yields every example of a window; validation scores every item from the user's full train
history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from lightning import pytorch as lp
from torch.utils.data import DataLoader

from explorec.data.interactions import UserSequences
from explorec.data.processed import ProcessedDataset
from explorec.models.global_batch import GlobalBatchShard, contiguous_shard

Batch = dict[str, torch.Tensor]
TRAINING_OBJECTIVES = ("next_item", "held_out")


def genre_lists(genres: pd.Series) -> pd.Series:
    """Return each item's genres as a list, from "A|B" strings."""
    return genres.fillna("").astype(str).map(lambda value: [g for g in value.split("|") if g])


def genre_vocabulary(genres: pd.Series) -> list[str]:
    """Return the sorted genres of "A|B" genre strings: the columns of `genre_multi_hot`."""
    return sorted({genre for names in genre_lists(genres) for genre in names})


def genre_multi_hot(genres: pd.Series) -> np.ndarray | None:
    """Return a float32 multi-hot [n_items, n_genres] of "A|B" genre strings (None when no item has one)."""
    lists = genre_lists(genres)
    vocabulary = genre_vocabulary(genres)
    if not vocabulary:
        return None
    column = {genre: index for index, genre in enumerate(vocabulary)}
    matrix = np.zeros((len(lists), len(vocabulary)), dtype=np.float32)
    for row, names in enumerate(lists):
        matrix[row, [column[name] for name in names]] = 1.0
    return matrix


def item_log_frequency(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """Return log of each item's share of train interactions (items never seen get log(1 / total))."""
    counts = np.bincount(train["item_idx"].to_numpy(), minlength=n_items).astype(np.float64)
    return np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32)


def training_windows(sequences: UserSequences, history_length: int) -> np.ndarray:
    """Return [n_windows, 2] (start, end) positions of windows of up to N + 1 items, stride N, per user.

    Consecutive windows of a user overlap by one item, so every train interaction is the target of
    exactly one window position (the user's first item is predicted from the start token alone).
    """
    windows = []
    for begin, finish in zip(sequences.offsets[:-1], sequences.offsets[1:], strict=True):
        ends = np.arange(finish, begin, -history_length)
        ends = ends[(ends > begin + 1) | (ends == finish)]
        windows.append(np.stack([np.maximum(ends - history_length - 1, begin), ends], axis=1))
    return np.concatenate(windows).astype(np.int64) if windows else np.zeros((0, 2), dtype=np.int64)


class TrainingWindows:
    """Indexable training windows; a list of window indices is turned into one padded batch at once.

    A window of items w_0..w_m gives the history w_0..w_{m-1} (right-aligned in N slots) and the target
    after every input token: the start token predicts w_0 (only where w_0 is the user's first item;
    otherwise w_0 is the last target of the previous window) and item w_j predicts w_{j+1}.
    """

    def __init__(self, sequences: UserSequences, history_length: int) -> None:
        self.sequences = sequences
        self.history_length = history_length
        self.owners = sequences.owners()
        self.windows = training_windows(sequences, history_length)

    def __len__(self) -> int:
        """Number of windows."""
        return len(self.windows)

    def __getitem__(self, index: int) -> int:
        """Return the window index; batching happens in `collate`."""
        return index

    def collate(self, indices: Sequence[int]) -> Batch:
        """Return user, history [B, N], padding mask, targets [B, N + 1] and target mask (True = a target)."""
        starts, ends = self.windows[np.asarray(indices, dtype=np.int64)].T
        users = self.owners[starts]
        history, padding = self.sequences.windows(users, ends - 1, self.history_length)
        target_positions = (
            ends[:, None] - self.history_length - 1 + np.arange(self.history_length + 1)[None, :]
        )
        target_positions[:, 0] = starts
        has_target = np.concatenate([(starts == self.sequences.offsets[users])[:, None], ~padding], axis=1)
        targets = np.where(has_target, self.sequences.items[np.clip(target_positions, 0, None)], 0)
        return {
            "user_idx": torch.from_numpy(users),
            "history": torch.from_numpy(history),
            "padding_mask": torch.from_numpy(padding),
            "targets": torch.from_numpy(targets),
            "target_mask": torch.from_numpy(has_target),
        }


class HeldOutExamples:
    """Examples of (the user's other train items, up to N most recent; a random share of items as targets).

    This is the objective of random (not chronological) splits: each user contributes
    ceil(1 / held_out_fraction) examples per epoch; each holds out a fresh random `held_out_fraction` of the
    user's train items as targets and keeps the rest as history (a multinomial likelihood over the
    held-out items, drawn with the torch RNG so that seeded runs repeat). `history_length` None keeps every
    other item as history (set-style user towers).
    """

    def __init__(
        self, sequences: UserSequences, history_length: int | None, held_out_fraction: float = 0.2
    ) -> None:
        if not 0.0 < held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction must lie in (0, 1); got {held_out_fraction}")
        self.sequences = sequences
        self.history_length = history_length
        self.held_out_fraction = held_out_fraction
        lengths = np.diff(sequences.offsets)
        repeats = np.where(lengths > 0, int(np.ceil(1.0 / held_out_fraction)), 0)
        self.users = np.repeat(np.arange(sequences.n_users), repeats)
        self.max_targets = int(np.ceil(held_out_fraction * lengths.max())) if len(lengths) else 1

    def __len__(self) -> int:
        """Number of examples per epoch."""
        return len(self.users)

    def __getitem__(self, index: int) -> int:
        """Return the example index; batching happens in `collate`."""
        return index

    def collate(self, indices: Sequence[int]) -> Batch:
        """Return user, history [B, N], padding mask, held-out targets [B, K] and their mask."""
        users = self.users[np.asarray(indices, dtype=np.int64)]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))
        lengths = np.diff(self.sequences.offsets)[users]
        width = self.history_length
        if width is None:
            width = max(int((lengths - np.ceil(self.held_out_fraction * lengths)).max(initial=0)), 1)
        history = np.zeros((len(users), width), dtype=np.int64)
        padding = np.ones_like(history, dtype=bool)
        targets = np.zeros((len(users), self.max_targets), dtype=np.int64)
        target_mask = np.zeros_like(targets, dtype=bool)
        for row, user in enumerate(users):
            items = self.sequences.items[self.sequences.offsets[user] : self.sequences.offsets[user + 1]]
            held_out = np.zeros(len(items), dtype=bool)
            held_out[
                rng.choice(len(items), size=int(np.ceil(self.held_out_fraction * len(items))), replace=False)
            ] = True
            kept = items[~held_out][-width:]
            history[row, width - len(kept) :] = kept
            padding[row, width - len(kept) :] = False
            targets[row, : held_out.sum()] = items[held_out]
            target_mask[row, : held_out.sum()] = True
        return {
            "user_idx": torch.from_numpy(users),
            "history": torch.from_numpy(history),
            "padding_mask": torch.from_numpy(padding),
            "held_out": torch.from_numpy(targets),
            "held_out_mask": torch.from_numpy(target_mask),
        }


class UserHistories:
    """Indexable users with their last N history items (all when N is None), for scoring every item."""

    def __init__(self, sequences: UserSequences, users: np.ndarray, history_length: int | None) -> None:
        self.sequences = sequences
        self.users = np.asarray(users, dtype=np.int64)
        self.history_length = history_length

    def __len__(self) -> int:
        """Number of users."""
        return len(self.users)

    def __getitem__(self, index: int) -> int:
        """Return the index; batching happens in `collate`."""
        return index

    def collate(self, indices: Sequence[int]) -> Batch:
        """Return the users at `indices` with their right-aligned last-N histories and padding masks."""
        users = self.users[np.asarray(indices, dtype=np.int64)]
        ends = self.sequences.offsets[users + 1]
        history, padding = self.sequences.windows(users, ends, self.history_length)
        return {
            "user_idx": torch.from_numpy(users),
            "history": torch.from_numpy(history),
            "padding_mask": torch.from_numpy(padding),
        }


class TwoTowerDataModule(lp.LightningDataModule):
    """Train examples from the train split; validation users with their train history.

    `objective`: "next_item" (causal windows, for chronological splits) or "held_out" (random held-out
    items from the rest of the history, for random splits). `whole_history`: held-out examples and
    validation users read every history item (set-style user towers), not only the last `history_length`.
    """

    def __init__(
        self,
        dataset: ProcessedDataset,
        *,
        history_length: int,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
        objective: str = "next_item",
        held_out_fraction: float = 0.2,
        whole_history: bool = False,
    ) -> None:
        super().__init__()
        if objective not in TRAINING_OBJECTIVES:
            raise ValueError(f"objective={objective!r} is not one of {TRAINING_OBJECTIVES}")
        self.objective = objective
        self.history_length = history_length
        self.held_out_fraction = held_out_fraction
        self.read_length: int | None = None if whole_history else history_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.train_sequences = dataset.sequences("train")
        self.validation_targets: sp.csr_matrix = dataset.matrix("valid")
        self.validation_exclude: sp.csr_matrix = dataset.matrix("train")
        self.validation_users = np.flatnonzero(np.diff(self.validation_targets.indptr) > 0)

    def _rank(self) -> tuple[int, int]:
        """Return (this process's rank, number of processes) of the attached trainer ((0, 1) without one)."""
        trainer = self.trainer
        return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        """Return shuffled training batches (under DDP: this rank's share of each global batch)."""
        examples: TrainingWindows | HeldOutExamples = (
            TrainingWindows(self.train_sequences, self.history_length)
            if self.objective == "next_item"
            else HeldOutExamples(self.train_sequences, self.read_length, self.held_out_fraction)
        )
        rank, world_size = self._rank()
        return DataLoader(
            examples,
            batch_sampler=GlobalBatchShard(len(examples), self.batch_size, rank=rank, world_size=world_size),
            collate_fn=examples.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        """Return the validation users (those with a validation item) in index order; a shard under DDP."""
        shard = contiguous_shard(len(self.validation_users), *self._rank())
        users = UserHistories(self.train_sequences, self.validation_users[shard], self.read_length)
        return DataLoader(
            users, batch_size=self.eval_batch_size, shuffle=False, collate_fn=users.collate, num_workers=0
        )
