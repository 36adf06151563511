"""The simulated world on ML-100K: pool sizes, no leakage, calibration targets (needs EXPLOREC_DATA_DIR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorec.config.simulation import SimulateConfig
from explorec.data.sources import read_ml100k
from explorec.simulation.calibration import top_servable
from explorec.simulation.environment import build_world

pytestmark = pytest.mark.realdata


def test_ml100k_world(real_data_dir: Path) -> None:
    raw = read_ml100k(real_data_dir / "ml-100k")
    ratings = raw.interactions
    user_index = {user: index for index, user in enumerate(sorted(ratings["user_id"].unique()))}
    item_index = {item: index for index, item in enumerate(sorted(ratings["item_id"].unique()))}
    frame = ratings[ratings["rating"] >= 4].assign(
        user_idx=lambda f: f["user_id"].map(user_index), item_idx=lambda f: f["item_id"].map(item_index)
    )[["user_idx", "item_idx", "timestamp"]]
    cfg = SimulateConfig()
    world = build_world(positives=frame, n_users=len(user_index), n_items=len(item_index), cfg=cfg)
    assert world.pools.test.size >= 300
    assert world.training[["user_idx", "item_idx"]].merge(world.hidden[["user_idx", "item_idx"]]).empty
    assert world.ground_truth.l2 in cfg.ease_l2_grid
    users = world.pools.simulated
    for target, model in zip(cfg.calibrations, world.click_models, strict=True):
        assert world.click_probabilities(users, model).mean() == pytest.approx(
            target.mean_click_probability, abs=1e-4
        )
        top = model.probabilities(top_servable(world.noisy_scores(users), world.visible_mask(users)))
        assert float(np.mean(top)) == pytest.approx(target.top10_click_probability, abs=1e-3)
