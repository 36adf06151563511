"""Bundles built from an in-memory FitResult and from a training run's logged artifacts serve alike."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from explorec.config import ModelConfig
from explorec.data.processed import ProcessedDataset
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import RecommenderBundle, tower_config
from explorec.serving.packaging import SERVING_HISTORY_SPLITS, bundle_from_parts, bundle_from_run
from explorec.serving.recommender import Recommender, parse_request

MODEL_CFG = ModelConfig(embedding_dim=8, history_length=5, attention_heads=2, use_genres=False)


def bundle_from_fit(
    fit, policy: PolicySpec, *, history_splits: tuple[str, ...] = SERVING_HISTORY_SPLITS
) -> RecommenderBundle:
    """Build a bundle from an in-memory FitResult, as `bundle_from_run` does from its logged artifacts."""
    model = fit.model.eval()
    return bundle_from_parts(
        dataset=fit.dataset,
        item_vectors=fit.item_vectors(),
        user_tower_state=model.user_tower.state_dict(),
        tower=tower_config(model.model_cfg, fit.dataset.n_users),
        policy=policy,
        history_splits=history_splits,
    )


@pytest.fixture
def fit(dataset: ProcessedDataset):
    """Return a FitResult of an untrained (seeded) two-tower model, as fit_two_tower would hand it over."""
    from explorec.models.fit import FitResult, build_two_tower

    torch.manual_seed(0)
    model = build_two_tower(dataset, None, MODEL_CFG).eval()
    return FitResult(model, dataset, 0.0, {}, 0, None, 0.0)


def test_serving_user_vectors_equal_the_fit_result(fit, dataset: ProcessedDataset) -> None:
    """The bundle's user tower on a user's train history gives FitResult.user_vectors' vector."""
    bundle = bundle_from_fit(fit, PolicySpec("greedy", 0.0), history_splits=("train",))
    recommender = Recommender(bundle)
    users = np.arange(dataset.n_users)
    served = recommender.user_vectors([bundle.history(u) for u in users], list(users))
    np.testing.assert_allclose(served, fit.user_vectors(users, ("train",)), atol=1e-5)
    np.testing.assert_allclose(bundle.item_vectors, fit.item_vectors(), atol=1e-6)


def test_bundle_from_logged_run_artifacts(
    fit, dataset: ProcessedDataset, tmp_path: Path, tracking_uri: str
) -> None:
    """item_vectors.npy + checkpoint/best.ckpt of a run rebuild the same serving model (weights-only load)."""
    checkpoint = tmp_path / "checkpoint" / "best.ckpt"
    checkpoint.parent.mkdir()
    torch.save({"state_dict": fit.model.state_dict(), "epoch": 3}, checkpoint)
    np.save(tmp_path / "item_vectors.npy", fit.item_vectors())
    client = mlflow.MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("bundle-source")).info.run_id
    client.log_artifact(run_id, str(tmp_path / "item_vectors.npy"))
    client.log_artifact(run_id, str(checkpoint), artifact_path="checkpoint")
    from_run = bundle_from_run(
        run_id, dataset, MODEL_CFG, PolicySpec("greedy", 0.0), tracking_uri=tracking_uri
    )
    from_fit = bundle_from_fit(fit, PolicySpec("greedy", 0.0))
    run_recommender, fit_recommender = Recommender(from_run), Recommender(from_fit)
    for user in ("u0", "u7"):
        request = parse_request({"user_id": user, "k": 5}, run_recommender.limits)
        from_logged, from_memory = (r.recommend([request])[0] for r in (run_recommender, fit_recommender))
        assert from_logged.item_ids == from_memory.item_ids
        assert from_logged.scores == pytest.approx(from_memory.scores, abs=1e-6)


def test_mean_pooled_tower_serves_the_whole_history(dataset: ProcessedDataset, tracking_uri: str) -> None:
    """A set-style (mean-pooled) model, as random splits train, is rebuilt and reads every history item."""
    from dataclasses import replace

    from explorec.models.fit import FitResult, build_two_tower

    torch.manual_seed(0)
    mean_cfg = replace(
        MODEL_CFG, history_length=2, user_pooling="mean", training_objective="held_out", loss="full_softmax"
    )
    fit = FitResult(build_two_tower(dataset, None, mean_cfg).eval(), dataset, 0.0, {}, 0, None, 0.0)
    bundle = bundle_from_fit(fit, PolicySpec("greedy", 0.0), history_splits=("train",))
    assert bundle.tower_config["pooling"] == "mean"
    users = np.arange(dataset.n_users)
    assert max(bundle.history(u).size for u in users) > mean_cfg.history_length  # longer than N
    served = Recommender(bundle).user_vectors([bundle.history(u) for u in users], list(users))
    np.testing.assert_allclose(served, fit.user_vectors(users, ("train",)), atol=1e-5)


def test_a_model_with_separate_input_items_is_not_bundled(dataset: ProcessedDataset) -> None:
    """Serving reads histories through the served item vectors, which such a model does not."""
    from dataclasses import replace

    from explorec.models.fit import FitResult, build_two_tower

    untied = replace(MODEL_CFG, user_pooling="mean", separate_input_items=True)
    fit = FitResult(build_two_tower(dataset, None, untied).eval(), dataset, 0.0, {}, 0, None, 0.0)
    with pytest.raises(ValueError, match="separate_input_items"):
        bundle_from_fit(fit, PolicySpec("greedy", 0.0))
