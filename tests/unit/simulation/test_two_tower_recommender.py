"""The simulator's two-tower recommender: fitted on leak-free data only, and cached on disk."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import explorec.models.fit as fit_module
from explorec.config import ExplorecConfig, ModelConfig, TrainerConfig
from explorec.data.processed import SPLIT_NAMES, ProcessedDataset
from explorec.simulation.environment import SimulationWorld
from explorec.simulation.ground_truth import LeakageError
from explorec.simulation.recommender import check_tower_training_data, two_tower_recommender
from explorec.simulation.simulate import world_from_dataset
from tests.unit.simulation.conftest import N_ITEMS, N_USERS, small_simulate_config, synthetic_positives


def rated_dataset() -> ProcessedDataset:
    """The synthetic positives (rating 5) plus one low-rated interaction per user, split leave-last-out."""
    positives = synthetic_positives().assign(rating=5.0)
    rng = np.random.default_rng(5)
    negatives = pd.DataFrame(
        {
            "user_idx": np.arange(N_USERS),
            "item_idx": rng.integers(0, N_ITEMS, N_USERS),
            "timestamp": rng.integers(0, 10_000, N_USERS),
            "rating": 2.0,
        }
    )
    frame = pd.concat([positives, negatives], ignore_index=True).drop_duplicates(["user_idx", "item_idx"])
    frame = frame.sort_values(["user_idx", "timestamp", "item_idx"]).reset_index(drop=True)
    rank = frame.groupby("user_idx").cumcount(ascending=False)
    genres = ["Action", "Comedy", "Drama"]
    return ProcessedDataset(
        path=Path("synthetic"),
        train=frame[rank >= 2].reset_index(drop=True),
        valid=frame[rank == 1].reset_index(drop=True),
        test=frame[rank == 0].reset_index(drop=True),
        items=pd.DataFrame(
            {
                "item_idx": np.arange(N_ITEMS),
                "text": [f"film {i}" for i in range(N_ITEMS)],
                "genres": [genres[i % 3] for i in range(N_ITEMS)],
                "is_cold": False,
            }
        ),
        users=pd.DataFrame({"user_idx": np.arange(N_USERS), "user_id": [str(u) for u in range(N_USERS)]}),
        manifest={"fingerprint": "synthetic-rated"},
    )


def tiny_config(**model: Any) -> ExplorecConfig:
    """A fast configuration: tiny towers, one epoch (the simulator's budget), no progress bar."""
    return ExplorecConfig(
        model=ModelConfig(**{"embedding_dim": 8, "history_length": 5, "learning_rate": 1e-2, **model}),
        trainer=TrainerConfig(batch_size=8, enable_progress_bar=False, max_epochs=30),
        simulate=replace(small_simulate_config(), recommender_max_epochs=1),
        seed=7,
    )


class FitSpy:
    """Calls the real fit_two_tower and records the data set each call trained on."""

    def __init__(self) -> None:
        self.datasets: list[ProcessedDataset] = []
        self.max_epochs: list[int] = []
        self._real = fit_module.fit_two_tower

    def __call__(self, dataset: ProcessedDataset, *args: Any, **kwargs: Any) -> Any:
        self.datasets.append(dataset)
        self.max_epochs.append(args[1].trainer.max_epochs)
        return self._real(dataset, *args, **kwargs)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> FitSpy:
    """The spy in place of explorec.models.fit.fit_two_tower."""
    recorder = FitSpy()
    monkeypatch.setattr(fit_module, "fit_two_tower", recorder)
    return recorder


@pytest.fixture(scope="module")
def dataset() -> ProcessedDataset:
    """The rated synthetic data set."""
    return rated_dataset()


@pytest.fixture(scope="module")
def world(dataset: ProcessedDataset) -> SimulationWorld:
    """The simulated world of the small configuration on that data set."""
    return world_from_dataset(dataset, tiny_config().simulate)


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_idx"].astype(int), frame["item_idx"].astype(int), strict=True))


def test_no_hidden_positive_reaches_the_towers_training(
    dataset: ProcessedDataset, world: SimulationWorld, spy: FitSpy, tmp_path: Path
) -> None:
    outputs, info = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=None, cfg=tiny_config(), cache_dir=tmp_path
    )
    assert len(spy.datasets) == 1 and not info.cache_hit
    assert spy.max_epochs == [1]  # the simulator's own epoch budget, not trainer.max_epochs
    trained = spy.datasets[0]
    seen = set().union(*(_pairs(trained.split(name)) for name in SPLIT_NAMES))
    hidden = _pairs(world.hidden)
    assert hidden and not (seen & hidden)
    assert _pairs(world.visible) <= seen  # the visible part of simulated users is used
    simulated = set(world.pools.simulated.tolist())
    cutoff = world.visible.groupby("user_idx")["timestamp"].max()
    for name in SPLIT_NAMES:
        frame = trained.split(name)
        mine = frame[frame["user_idx"].isin(simulated)]
        assert (mine["timestamp"].to_numpy() <= mine["user_idx"].map(cutoff).to_numpy()).all()
        others = dataset.split(name)
        assert len(frame[~frame["user_idx"].isin(simulated)]) == len(
            others[~others["user_idx"].isin(simulated)]
        )
    assert outputs.scores.shape == (world.pools.simulated.size, N_ITEMS)
    assert outputs.item_vectors.shape == (N_ITEMS, 8)
    assert np.allclose(np.linalg.norm(outputs.item_vectors, axis=1), 1.0, atol=1e-5)
    assert outputs.name == "two_tower[minilm]"


def test_the_guard_rejects_unrestricted_training_data(
    dataset: ProcessedDataset, world: SimulationWorld
) -> None:
    with pytest.raises(LeakageError, match="hidden positives"):
        check_tower_training_data(dataset, world)
    hidden = _pairs(world.hidden)
    only_late = replace(
        dataset,
        train=dataset.train[[pair not in hidden for pair in _pairs_list(dataset.train)]],
        valid=dataset.valid[[pair not in hidden for pair in _pairs_list(dataset.valid)]],
        test=dataset.test[[pair not in hidden for pair in _pairs_list(dataset.test)]],
    )
    with pytest.raises(LeakageError, match="after their visible cut-off"):
        check_tower_training_data(only_late, world)


def _pairs_list(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return list(zip(frame["user_idx"].astype(int), frame["item_idx"].astype(int), strict=True))


def test_a_rerun_reads_the_cache_and_a_changed_config_refits(
    dataset: ProcessedDataset, world: SimulationWorld, spy: FitSpy, tmp_path: Path
) -> None:
    first, info = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=None, cfg=tiny_config(), cache_dir=tmp_path
    )
    again, info_again = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=None, cfg=tiny_config(), cache_dir=tmp_path
    )
    assert len(spy.datasets) == 1
    assert (info.cache_hit, info_again.cache_hit) == (False, True)
    assert info_again.cache_key == info.cache_key
    assert info_again.val_ndcg_at_10 == info.val_ndcg_at_10
    np.testing.assert_array_equal(again.scores, first.scores)
    np.testing.assert_array_equal(again.item_vectors, first.item_vectors)
    np.testing.assert_array_equal(again.users, first.users)
    progress = replace(tiny_config(), trainer=replace(tiny_config().trainer, enable_progress_bar=True))
    _, same = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=None, cfg=progress, cache_dir=tmp_path
    )
    assert same.cache_hit  # the progress bar does not change the fit
    _, other = two_tower_recommender(
        dataset=dataset,
        world=world,
        text_embeddings=None,
        cfg=tiny_config(embedding_dim=4),
        cache_dir=tmp_path,
    )
    assert not other.cache_hit and len(spy.datasets) == 2
    other_pools = world_from_dataset(dataset, replace(tiny_config().simulate, seed=4))
    _, moved = two_tower_recommender(
        dataset=dataset, world=other_pools, text_embeddings=None, cfg=tiny_config(), cache_dir=tmp_path
    )
    assert not moved.cache_hit and len(spy.datasets) == 3
    assert len({info.cache_key, other.cache_key, moved.cache_key}) == 3
