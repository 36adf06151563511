"""Serving with session feedback: shown items are excluded, reward models learn, scores are calibrated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.data.processed import ProcessedDataset
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import (
    RecommenderBundle,
    ScoreCalibration,
    load_bundle,
    user_histories,
)
from explorec.serving.packaging import fit_score_calibration
from explorec.serving.recommender import Recommender, parse_request

from .conftest import tiny_bundle

CALIBRATION = ScoreCalibration(slope=3.0, intercept=-2.0)


def answer(recommender: Recommender, **fields: object):
    """Return the recommendation for one request given as fields."""
    return recommender.recommend([parse_request(fields, recommender.limits)])[0]


def unseen_items(bundle: RecommenderBundle, row: int) -> list[str]:
    """Item ids outside the stored history of known user `row`, in catalogue order."""
    history = {bundle.item_ids[item] for item in bundle.history(row)}
    return [item for item in bundle.item_ids if item not in history]


def linucb_bundle(dataset: ProcessedDataset) -> RecommenderBundle:
    """A LinUCB bundle on the tiny catalogue with a fixed, known score calibration."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("linucb", 0.0, {}))
    bundle.score_calibration = CALIBRATION
    return bundle


def test_shown_items_are_never_served_again_and_are_counted(bundle: RecommenderBundle) -> None:
    """Shown items join the excluded set; unknown shown ids are ignored and counted."""
    recommender = Recommender(bundle)
    shown = unseen_items(bundle, 2)[:4]
    result = answer(
        recommender, user_id="u2", k=10, seed=5, shown_item_ids=[*shown, "gone"], clicked_item_ids=shown[:1]
    )
    assert result.n_feedback == 4 and result.n_unknown_items == 1
    assert not set(shown) & set(result.item_ids)
    assert answer(recommender, user_id="u2", k=10, seed=5).n_feedback == 0


def test_only_reward_models_serve_from_calibrated_scores(dataset: ProcessedDataset) -> None:
    """LinUCB gets σ(slope·score + intercept); ε-greedy and cold-start requests keep the raw scores."""
    linear = Recommender(linucb_bundle(dataset))
    plain = Recommender(tiny_bundle(dataset))
    scores = np.linspace(-1.0, 1.0, dataset.n_items)
    expected = 1.0 / (1.0 + np.exp(-(3.0 * scores - 2.0)))
    np.testing.assert_allclose(linear.policy_scores(linear.policy(None), scores, cold_start=False), expected)
    assert linear.policy_scores(linear.policy(None), scores, cold_start=True) is scores
    assert plain.policy_scores(plain.policy(None), scores, cold_start=False) is scores


def test_linucb_feedback_moves_the_clicked_items_neighbour(dataset: ProcessedDataset) -> None:
    """A click lifts the item most aligned with the clicked one, a skip lowers it (greedy on the mean)."""
    recommender = Recommender(linucb_bundle(dataset))
    row, user = 1, "u1"
    candidates = [recommender.item_index[item] for item in unseen_items(recommender.bundle, row)]
    k = len(candidates) - 1
    vectors = recommender.item_vectors.astype(np.float64)

    def rank(result, item: int) -> int:
        return result.item_ids.index(recommender.bundle.item_ids[item])

    baseline = answer(recommender, user_id=user, k=len(candidates), exploration_rate=0.0)
    moved = 0
    for clicked in candidates:
        others = [item for item in candidates if item != clicked]
        neighbour = max(others, key=lambda item: float(vectors[item] @ vectors[clicked]))
        clicked_id = recommender.bundle.item_ids[clicked]
        feedback = {"user_id": user, "k": k, "exploration_rate": 0.0, "shown_item_ids": [clicked_id]}
        after_click = answer(recommender, **feedback, clicked_item_ids=[clicked_id])
        after_skip = answer(recommender, **feedback)
        without = [item for item in baseline.item_ids if item != clicked_id]
        before = without.index(recommender.bundle.item_ids[neighbour])
        assert rank(after_click, neighbour) <= before <= rank(after_skip, neighbour)
        moved += rank(after_click, neighbour) < rank(after_skip, neighbour)
    assert moved > len(candidates) // 2


def test_semantic_cluster_counts_feedback(dataset: ProcessedDataset) -> None:
    """semantic_cluster's per-cluster counts take the request's clicks and skips."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("semantic_cluster", 0.5, {"n_clusters": 3}))
    recommender = Recommender(bundle)
    shown = unseen_items(bundle, 0)[:3]
    result = answer(recommender, user_id="u0", k=5, seed=1, shown_item_ids=shown, clicked_item_ids=shown[1:2])
    assert result.n_feedback == 3 and not set(shown) & set(result.item_ids)


def with_validation(dataset: ProcessedDataset, chosen: dict[int, int]) -> ProcessedDataset:
    """The data set with each user's validation interactions replaced by the one item `chosen[user]`."""
    rows = [(user, item, 4.0, 10**9 + user) for user, item in chosen.items()]
    valid = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    return dataclasses.replace(dataset, valid=valid)


def train_scores(bundle: RecommenderBundle, dataset: ProcessedDataset) -> np.ndarray:
    """Every user's scores over the catalogue from their train history, train items set to NaN."""
    recommender = Recommender(bundle)
    _, offsets, items = user_histories(dataset, ("train",))
    histories = [items[offsets[user] : offsets[user + 1]] for user in range(dataset.n_users)]
    scores = recommender.user_vectors(histories, list(range(dataset.n_users))) @ recommender.item_vectors.T
    scores = scores.astype(np.float64)
    scores[dataset.matrix("train").toarray() > 0] = np.nan
    return scores


def test_calibration_is_fitted_on_validation_items(dataset: ProcessedDataset) -> None:
    """Validation items that the scores rank first give a positive slope; ranked last, no calibration."""
    bundle = tiny_bundle(dataset)
    scores = train_scores(bundle, dataset)
    top = {user: int(np.nanargmax(row)) for user, row in enumerate(scores)}
    bottom = {user: int(np.nanargmin(row)) for user, row in enumerate(scores)}
    fitted = fit_score_calibration(bundle, with_validation(dataset, top))
    assert fitted is not None and fitted.slope > 0
    probabilities = fitted.probabilities(scores)
    chosen = probabilities[np.arange(dataset.n_users), list(top.values())]
    assert chosen.mean() > np.nanmean(probabilities)
    assert fit_score_calibration(bundle, with_validation(dataset, bottom)) is None


def test_calibration_survives_save_and_older_bundles_load_without(
    dataset: ProcessedDataset, tmp_path: Path
) -> None:
    """The calibration is written to model.json and read back; a model.json without it loads as None."""
    bundle = linucb_bundle(dataset)
    files = bundle.save(tmp_path / "bundle")
    assert load_bundle(files).score_calibration == CALIBRATION
    model = json.loads(files["model.json"].read_text())
    del model["score_calibration"]
    files["model.json"].write_text(json.dumps(model))
    assert load_bundle(files).score_calibration is None


@pytest.mark.parametrize("policy", ["linucb", "thompson", "linucb_novelty"])
def test_reward_models_serve_with_feedback(dataset: ProcessedDataset, policy: str) -> None:
    """Each reward-model policy answers a feedback request with k new items and valid propensities."""
    params = {"n_clusters": 3} if policy == "linucb_novelty" else {}
    bundle = tiny_bundle(dataset, policy=PolicySpec(policy, 0.5, params))
    bundle.score_calibration = CALIBRATION
    shown = unseen_items(bundle, 3)[:5]
    result = answer(
        Recommender(bundle), user_id="u3", k=6, seed=2, shown_item_ids=shown, clicked_item_ids=shown[:2]
    )
    assert len(set(result.item_ids)) == 6 and not set(shown) & set(result.item_ids)
    assert all(0.0 <= p <= 1.0 + 1e-9 for p in result.propensities)
