"""Build any baseline by name with explicit, checked hyperparameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from explorec.baselines.als import ALS, ALSParams
from explorec.baselines.base import Recommender
from explorec.baselines.ease import EASE, EASEParams
from explorec.baselines.item_knn import ItemKNN, ItemKNNParams
from explorec.baselines.popularity import Popularity, PopularityParams

BASELINES: dict[str, tuple[Callable[[Any], Recommender], type]] = {
    "popularity": (Popularity, PopularityParams),
    "item_knn": (ItemKNN, ItemKNNParams),
    "ease": (EASE, EASEParams),
    "als": (ALS, ALSParams),
}
"""Baseline name → (model class, its frozen hyperparameter dataclass with the defaults)."""


def build_baseline(name: str, *, max_items: int | None = None, **params: float | int) -> Recommender:
    """Return an unfitted baseline `name` with the given hyperparameters (others keep their defaults).

    `max_items` bounds the catalogue of the baselines that hold item × item structures (EASE, ItemKNN);
    the others have no such bound and ignore it.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    model_class, params_class = BASELINES[name]
    known = {field.name for field in dataclasses.fields(params_class)}
    if max_items is not None and "max_items" in known:
        params = {**params, "max_items": max_items}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"unknown parameters {unknown} for baseline {name!r}; expected some of {sorted(known)}"
        )
    return model_class(params_class(**params))
