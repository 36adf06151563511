"""`BaselineScorer`: a baseline by name as a `Scorer`, fitted once on each history it scores from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from explorec.baselines.base import Recommender
from explorec.baselines.factory import build_baseline
from explorec.data.processed import ProcessedDataset


class BaselineScorer:
    """A baseline fitted once per history (train for validation, train + validation for test)."""

    def __init__(
        self, name: str, params: dict[str, Any], dataset: ProcessedDataset, *, max_items: int | None = None
    ) -> None:
        self.name, self.params, self.dataset, self.max_items = name, params, dataset, max_items
        self._models: dict[tuple[str, ...], Recommender] = {}
        self.fit_time_s = 0.0

    def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
        """Return float32 scores of `users` from the model fitted on the interactions of `history_splits`."""
        key = tuple(history_splits)
        if key not in self._models:
            started = time.perf_counter()
            model = build_baseline(self.name, max_items=self.max_items, **self.params)
            self._models[key] = model.fit(self.dataset.matrix(*key))
            self.fit_time_s += time.perf_counter() - started
        return np.asarray(self._models[key].score(users), dtype=np.float32)
