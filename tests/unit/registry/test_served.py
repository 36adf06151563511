"""Beyond-accuracy metrics of served slates: keys the gates read, hand-checked values, exploration effects."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.config.registry import GatesConfig
from explorec.data.processed import ProcessedDataset
from explorec.evaluation.targets import UserSample
from explorec.policies.simple import EpsilonGreedyPolicy, GreedyPolicy
from explorec.serving.bundle import RecommenderBundle
from explorec.serving.served import evaluation_users, served_metrics_for_bundle, served_slate_metrics


def test_hand_computed_slates() -> None:
    """Two users, four orthogonal items, k=2: slates {0,1}, {2,3} → coverage 1, Gini 0, ILD 1."""
    user_vectors = np.eye(4)[[0, 2]] + np.eye(4)[[1, 3]] * 0.5
    item_vectors = np.eye(4)
    excluded = sp.csr_matrix((2, 4))
    metrics = served_slate_metrics(
        user_vectors=user_vectors,
        item_vectors=item_vectors,
        excluded=excluded,
        policy=GreedyPolicy(exploration_rate=0.0),
        k=2,
    )
    assert metrics["served/greedy/catalog_coverage"] == 1.0
    assert metrics["served/greedy/exposure_gini"] == pytest.approx(0.0)
    assert metrics["served/greedy/intra_list_diversity"] == pytest.approx(1.0)
    assert metrics["served/policy/deviation_rate"] == 0.0
    assert metrics["served/policy/explored_share"] == 0.0


def test_excluded_items_are_never_served() -> None:
    """An item excluded for every user gets no exposure."""
    rng = np.random.default_rng(0)
    user_vectors, item_vectors = rng.normal(size=(30, 4)), rng.normal(size=(12, 4))
    excluded = sp.csr_matrix(np.tile(np.eye(12)[0], (30, 1)))
    metrics = served_slate_metrics(
        user_vectors=user_vectors,
        item_vectors=item_vectors,
        excluded=excluded,
        policy=EpsilonGreedyPolicy(exploration_rate=1.0),
        k=11,
    )
    assert metrics["served/policy/catalog_coverage"] == pytest.approx(11 / 12)


def test_bundle_metrics_cover_every_gated_key(bundle: RecommenderBundle, dataset: ProcessedDataset) -> None:
    """The served metrics of a bundle hold every served/ key the default gates read, all finite."""
    metrics = served_metrics_for_bundle(bundle, dataset, k=5, seed=0)
    gated = [
        gate.metric for gate in GatesConfig().metric_gates().values() if gate.metric.startswith("served/")
    ]
    assert gated and set(gated) <= set(metrics)
    assert all(np.isfinite(value) for value in metrics.values())
    assert metrics["served/policy/explored_share"] > 0.0
    assert 0.0 <= metrics["served/policy/exposure_gini"] <= 1.0
    assert metrics["served/greedy/novelty"] >= 0.0


def test_exploration_widens_coverage(bundle: RecommenderBundle, dataset: ProcessedDataset) -> None:
    """Full exploration covers at least as much of the catalogue as greedy, with lower Gini."""
    bundle.policy = replace(bundle.policy, exploration_rate=1.0)
    metrics = served_metrics_for_bundle(bundle, dataset, k=5, seed=0)
    assert metrics["served/policy/catalog_coverage"] >= metrics["served/greedy/catalog_coverage"]
    assert metrics["served/policy/exposure_gini"] < metrics["served/greedy/exposure_gini"]


def test_a_user_sample_serves_only_its_test_users(
    bundle: RecommenderBundle, dataset: ProcessedDataset
) -> None:
    """With a sample, the metrics are those of a data set whose test split holds only the sampled users."""
    sample = UserSample(max_users=3, seed=1)
    chosen = sample.users(dataset.matrix("test"))
    assert chosen is not None and len(chosen) == 3 < len(evaluation_users(dataset))
    only_sampled = replace(dataset, test=dataset.test[dataset.test["user_idx"].isin(chosen)])
    sampled = served_metrics_for_bundle(bundle, dataset, k=5, seed=0, sample=sample)
    assert sampled == served_metrics_for_bundle(bundle, only_sampled, k=5, seed=0)
    assert sampled != served_metrics_for_bundle(bundle, dataset, k=5, seed=0)
    everyone = served_metrics_for_bundle(bundle, dataset, k=5, seed=0, sample=UserSample(max_users=None))
    assert everyone == served_metrics_for_bundle(bundle, dataset, k=5, seed=0)
