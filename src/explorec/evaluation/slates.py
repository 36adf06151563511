"""Beyond-accuracy metrics of served slates: coverage, exposure inequality and intra-list diversity."""

from __future__ import annotations

import numpy as np

from explorec.evaluation import beyond_accuracy as ba


def slate_metrics(
    items: np.ndarray, *, n_items: int, diversity_vectors: np.ndarray | None = None
) -> dict[str, float]:
    """Return catalogue and distributional coverage, exposure Gini (and ILD with vectors) of slates [n, k]."""
    metrics = {
        "catalog_coverage": ba.catalog_coverage(recommended_items=items, n_items=n_items),
        "distributional_coverage": ba.distributional_coverage(recommended_items=items, n_items=n_items),
        "exposure_gini": ba.exposure_gini(recommended_items=items, n_items=n_items),
    }
    if diversity_vectors is not None:
        metrics["intra_list_diversity"] = ba.intra_list_diversity(
            recommendation_lists=list(items), item_vectors=diversity_vectors
        )
    return metrics
