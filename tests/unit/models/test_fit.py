"""Smoke, determinism and scoring of `fit_two_tower` on the tiny synthetic data set (CPU)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from explorec.config import ExplorecConfig, ModelConfig, SplitConfig, TrainerConfig
from explorec.data.interactions import user_sequences
from explorec.data.processed import ProcessedDataset
from explorec.evaluation.harness import full_ranking_evaluate
from explorec.evaluation.scoring import ScoreMatrix
from explorec.models.data import UserHistories
from explorec.models.fit import (
    build_trainer,
    build_two_tower,
    fit_two_tower,
    load_weights,
    refit_two_tower,
    resolve_model_config,
    training_objective,
    with_validation_in_train,
)

FAST_TRAINER: dict[str, object] = {
    "max_epochs": 3,
    "batch_size": 16,
    "num_threads": 1,
    "enable_progress_bar": False,
}


def _config(split: str = "leave_last_out", **trainer: object) -> ExplorecConfig:
    """Return a small, fast CPU configuration."""
    return ExplorecConfig(
        split=SplitConfig(name=split),
        model=ModelConfig(embedding_dim=8, history_length=4, learning_rate=1e-2),
        trainer=TrainerConfig(**{**FAST_TRAINER, **trainer}),  # type: ignore[arg-type]
        seed=7,
    )


def test_fast_dev_run_smoke(tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path) -> None:
    result = fit_two_tower(tiny, tiny_text_embeddings, _config(fast_dev_run=True), checkpoint_dir=tmp_path)
    scores = result.score(np.array([0, 5]))
    assert scores.shape == (2, tiny.n_items)
    assert np.isfinite(scores).all()


def test_seeded_fits_are_identical(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    first = fit_two_tower(tiny, tiny_text_embeddings, _config(), checkpoint_dir=tmp_path / "a")
    second = fit_two_tower(tiny, tiny_text_embeddings, _config(), checkpoint_dir=tmp_path / "b")
    timing = ("train/epoch_time_s", "train/examples_per_sec")
    assert [_without(epoch, timing) for epoch in first.history] == [
        _without(e, timing) for e in second.history
    ]
    assert first.epochs_run == second.epochs_run == 3
    np.testing.assert_array_equal(first.item_vectors(), second.item_vectors())


def test_fit_logs_namespaced_metrics_and_restores_the_best(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    result = fit_two_tower(tiny, tiny_text_embeddings, _config(), checkpoint_dir=tmp_path)
    last = result.history[-1]
    for key in (
        "val/ndcg@10",
        "val/recall@20",
        "train/loss_epoch",
        "train/examples_per_sec",
        "train/epoch_time_s",
    ):
        assert key in last
    assert result.best_score == max(epoch["val/ndcg@10"] for epoch in result.history)
    assert result.best_checkpoint is not None
    restored = load_weights(
        build_two_tower(tiny, tiny_text_embeddings, _config().model), result.best_checkpoint
    )
    for name, tensor in restored.state_dict().items():
        torch.testing.assert_close(tensor, result.model.state_dict()[name])


def test_scores_are_cosines_of_unit_vectors(tiny: ProcessedDataset, tmp_path: Path) -> None:
    result = fit_two_tower(tiny, None, _config(fast_dev_run=True), checkpoint_dir=tmp_path)
    items, users = result.item_vectors(), result.user_vectors(np.array([1, 2]), ("train", "valid"))
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.score(np.array([1, 2]), ("train", "valid")), users @ items.T, atol=1e-5)


def _without(metrics: dict[str, float], keys: tuple[str, ...]) -> dict[str, float]:
    """Return `metrics` without `keys` (wall-clock measurements differ between runs)."""
    return {key: value for key, value in metrics.items() if key not in keys}


def test_random_split_trains_on_held_out_items(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    assert training_objective(_config("random_ratio")) == "held_out"
    assert training_objective(_config()) == "next_item"
    config = _config("random_ratio", batch_size=64)
    result = fit_two_tower(tiny, tiny_text_embeddings, config, checkpoint_dir=tmp_path)
    assert result.epochs_run == 3
    assert all(epoch["train/examples_per_sec"] > 0 for epoch in result.history)
    assert np.isfinite(result.score(np.array([0, 1]))).all()


def test_auto_choices_per_split() -> None:
    chronological = resolve_model_config(ModelConfig(), "leave_last_out")
    assert (chronological.training_objective, chronological.loss, chronological.user_pooling) == (
        "next_item",
        "sampled_softmax",
        "attention",
    )
    assert resolve_model_config(ModelConfig(), "temporal_ratio") == chronological
    random = resolve_model_config(ModelConfig(), "random_ratio")
    assert (random.training_objective, random.loss, random.user_pooling) == (
        "held_out",
        "full_softmax",
        "mean",
    )
    explicit = ModelConfig(loss="sampled_softmax", user_pooling="attention")
    chosen = resolve_model_config(explicit, "random_ratio")
    assert (chosen.loss, chosen.user_pooling) == ("sampled_softmax", "attention")


def test_full_softmax_set_model_fits_and_scores_from_the_whole_history(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    config = _config("random_ratio", batch_size=64, max_epochs=5)
    result = fit_two_tower(tiny, tiny_text_embeddings, config, checkpoint_dir=tmp_path)
    assert result.model.model_cfg.loss == "full_softmax"
    assert result.model.user_tower.pooling == "mean" and result.model.user_tower.max_history is None
    losses = [epoch["train/loss_epoch"] for epoch in result.history]
    assert losses[-1] < losses[0]
    # the tiny users have 6 train items, more than history_length=4: all of them count
    sequences = user_sequences(tiny.train, tiny.n_users)
    whole = UserHistories(sequences, np.array([0]), None).collate([0])
    last_four = UserHistories(sequences, np.array([0]), 4).collate([0])
    assert whole["history"].shape == (1, 6)
    with torch.no_grad():
        from_whole = result.model.user_vectors(whole).numpy()
        from_last_four = result.model.user_vectors(last_four).numpy()
    np.testing.assert_allclose(result.user_vectors(np.array([0])), from_whole, rtol=1e-5, atol=1e-6)
    assert not np.allclose(from_whole, from_last_four)


def test_separate_input_items_read_the_history_and_leave_the_scored_items_alone(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray
) -> None:
    shared = build_two_tower(tiny, tiny_text_embeddings, ModelConfig(embedding_dim=8, user_pooling="mean"))
    assert shared.input_item_tower is None
    assert not any(key.startswith("input_item_tower.") for key in shared.state_dict())
    model_cfg = ModelConfig(embedding_dim=8, user_pooling="mean", separate_input_items=True)
    model = build_two_tower(tiny, tiny_text_embeddings, model_cfg).eval()
    assert model.input_item_tower is not None
    batch = UserHistories(user_sequences(tiny.train, tiny.n_users), np.array([0, 1]), None).collate([0, 1])
    with torch.no_grad():
        users, items = model.user_vectors(batch), model.all_item_vectors()
        from_items = model.user_vectors(batch, item_vectors=items)
        model.input_item_tower.id_embedding.weight.mul_(-1.0)
        moved_users, moved_items = model.user_vectors(batch), model.all_item_vectors()
    torch.testing.assert_close(from_items, users)  # given item vectors are ignored: the input tower reads
    assert not torch.allclose(moved_users, users)
    torch.testing.assert_close(moved_items, items)


def test_normalize_flags_reach_the_scoring_and_the_input_item_towers(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray
) -> None:
    default_cfg = ModelConfig(embedding_dim=8, user_pooling="mean", separate_input_items=True)
    default = build_two_tower(tiny, tiny_text_embeddings, default_cfg)
    assert default.item_tower.normalize and default.input_item_tower is not None
    assert default.input_item_tower.normalize
    model_cfg = ModelConfig(
        embedding_dim=8,
        user_pooling="mean",
        separate_input_items=True,
        normalize_items=False,
        normalize_input_items=False,
    )
    model = build_two_tower(tiny, tiny_text_embeddings, model_cfg).eval()
    assert model.input_item_tower is not None
    assert not model.item_tower.normalize and not model.input_item_tower.normalize
    lengths = model.all_item_vectors().norm(dim=-1)
    assert not torch.allclose(lengths, torch.ones_like(lengths))
    only_inputs = replace(model_cfg, normalize_items=True)
    mixed = build_two_tower(tiny, tiny_text_embeddings, only_inputs).eval()
    torch.testing.assert_close(mixed.all_item_vectors().norm(dim=-1), torch.ones(tiny.n_items))


def test_each_loss_runs_with_each_objective(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    for objective, loss, pooling in [
        ("next_item", "full_softmax", "attention"),
        ("held_out", "sampled_softmax", "attention"),
        ("next_item", "sampled_softmax", "mean"),
    ]:
        config = _config(fast_dev_run=True)
        config.model = ModelConfig(
            embedding_dim=8, history_length=4, training_objective=objective, loss=loss, user_pooling=pooling
        )
        result = fit_two_tower(tiny, tiny_text_embeddings, config, checkpoint_dir=tmp_path / loss / objective)
        assert np.isfinite(result.score(np.array([0, 1]))).all()


def test_full_softmax_gives_never_trained_items_no_mass(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray
) -> None:
    without_item_5 = replace(tiny, train=tiny.train[tiny.train["item_idx"] != 5].reset_index(drop=True))
    model_cfg = ModelConfig(
        embedding_dim=8, history_length=4, training_objective="held_out", loss="full_softmax"
    )
    model = build_two_tower(without_item_5, tiny_text_embeddings, model_cfg).eval()
    assert not bool(model.item_tower.known_items[5])
    batch = {
        "user_idx": torch.tensor([0, 1]),
        "history": torch.tensor([[0, 1, 2], [0, 3, 4]]),
        "padding_mask": torch.tensor([[False, False, False], [True, False, False]]),
        "held_out": torch.tensor([[6, 7], [8, 0]]),
        "held_out_mask": torch.tensor([[True, True], [True, False]]),
    }
    with torch.no_grad():
        before, n_targets = model._full_softmax_loss(batch)
        model.item_tower.text_embeddings[5] = -model.item_tower.text_embeddings[5]
        after_unseen, _ = model._full_softmax_loss(batch)
        model.item_tower.text_embeddings[9] = -model.item_tower.text_embeddings[9]
        after_seen, _ = model._full_softmax_loss(batch)
    assert n_targets == 3
    torch.testing.assert_close(after_unseen, before)
    assert not torch.allclose(after_seen, before)


def test_refit_trains_on_train_and_validation_for_the_given_epochs(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray
) -> None:
    merged = with_validation_in_train(tiny)
    assert len(merged.train) == len(tiny.train) + len(tiny.valid) and merged.valid.empty
    assert merged.matrix("train").nnz == tiny.matrix("train", "valid").nnz
    refit = refit_two_tower(tiny, tiny_text_embeddings, _config(split="random_ratio"), epochs=2)
    assert refit.epochs_run == 2 and len(refit.history) == 2
    known = refit.model.item_tower.known_items.numpy()
    assert known[tiny.valid["item_idx"].to_numpy()].all()
    scores = refit.score(np.array([0, 5]), ("train", "valid"))
    assert scores.shape == (2, tiny.n_items) and np.isfinite(scores).all()


def test_a_trainer_logs_its_setup_but_not_the_cloud_logger_tip(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        build_trainer(TrainerConfig(max_epochs=1, enable_progress_bar=False), callbacks=[], logger=False)
    messages = [record.getMessage() for record in caplog.records]
    assert any("GPU available" in message for message in messages)
    assert not any("Tip" in message for message in messages)


def _ema_config(decay: float) -> ExplorecConfig:
    """Return the fast random-split configuration with a moving average of the weights."""
    config = _config("random_ratio", max_epochs=3)
    return replace(config, model=replace(config.model, ema_decay=decay))


def test_ema_averages_after_each_step_and_swaps_for_validation(tiny: ProcessedDataset) -> None:
    model = build_two_tower(tiny, None, resolve_model_config(_ema_config(0.5).model, "random_ratio"))
    first = [parameter.detach().clone() for parameter in model.parameters()]
    model.on_train_batch_end(None, None, 0)  # the first average is the weights themselves
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.on_train_batch_end(None, None, 1)  # one update: decay min(0.5, 2 / 11) = 2 / 11
    decay = 2 / 11
    expected = [decay * before + (1 - decay) * (before + 1.0) for before in first]
    model._swap_ema()  # as validation does: the average is scored
    for parameter, average in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.detach(), average)
    model._swap_ema()  # and the trained weights come back for the next step
    for parameter, before in zip(model.parameters(), first, strict=True):
        torch.testing.assert_close(parameter.detach(), before + 1.0)
    checkpoint = {"state_dict": {name: p.detach().clone() for name, p in model.named_parameters()}}
    model.on_save_checkpoint(checkpoint)  # checkpoints hold the average
    for (name, _), average in zip(model.named_parameters(), expected, strict=True):
        torch.testing.assert_close(checkpoint["state_dict"][name], average)
    model.on_train_end()  # the trained model is the average
    for parameter, average in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.detach(), average)


def test_ema_off_keeps_no_average(tiny: ProcessedDataset) -> None:
    model = build_two_tower(tiny, None, resolve_model_config(_ema_config(0.0).model, "random_ratio"))
    model.on_train_batch_end(None, None, 0)
    assert model._ema is None
    with pytest.raises(ValueError, match="ema_decay"):
        build_two_tower(tiny, None, replace(_config().model, ema_decay=1.0))


def test_ema_fit_restores_the_average_that_validation_scored(
    tiny: ProcessedDataset, tiny_text_embeddings: np.ndarray, tmp_path: Path
) -> None:
    config = _ema_config(0.9)
    result = fit_two_tower(tiny, tiny_text_embeddings, config, checkpoint_dir=tmp_path / "ema")
    users = np.flatnonzero(np.diff(tiny.matrix("valid").indptr) > 0)
    scores = result.score(np.arange(tiny.n_users))
    restored = full_ranking_evaluate(
        ScoreMatrix(scores),
        targets=tiny.matrix("valid"),
        exclude=tiny.matrix("train"),
        ks=(10,),
        users=users,
    )
    assert restored["ndcg@10"] == pytest.approx(result.best_score, abs=1e-6)
    plain = fit_two_tower(tiny, tiny_text_embeddings, _ema_config(0.0), checkpoint_dir=tmp_path / "plain")
    assert [epoch["val/ndcg@10"] for epoch in result.history] != [
        epoch["val/ndcg@10"] for epoch in plain.history
    ]
    refit = refit_two_tower(tiny, tiny_text_embeddings, config, epochs=2)
    assert refit.model._ema is None and np.isfinite(refit.score(np.array([0, 1]))).all()
