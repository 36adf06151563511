"""The simulator's three ground truths on one data set: λ, holdout recall, calibration, and how they differ.

For each `simulate.ground_truth` the simulated world is built as `explorec simulate` builds it (pools,
visible/hidden split, ground truth with λ from the holdout outside the test pool, click-model calibration),
and the script prints λ with every grid point's holdout recall@20, each calibration's a, b and the targets
reached. Then, over the simulated users' servable items (outside their visible history): the mean
log(1 + popularity) of each truth's top 10, and for each pair of truths the mean top-10 overlap and the mean
per-user Spearman correlation of their rankings.

    nice -n 5 python benchmarks/ground_truths.py [data=ml_latest_small_tmdb ...]
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import time

import numpy as np

from explorec.config import compose
from explorec.data.loading import load_dataset
from explorec.simulation.environment import build_world
from explorec.simulation.ground_truth import GROUND_TRUTHS, positives_from_dataset


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks of a vector's entries (0 = smallest)."""
    return values.argsort().argsort()


def main() -> None:
    """Build each world and print."""
    cfg = compose(sys.argv[1:])
    dataset = load_dataset(cfg)
    positives = positives_from_dataset(dataset, min_rating=cfg.simulate.min_rating)
    n_users, n_items = len(dataset.users), len(dataset.items)
    scores, servable = {}, None
    for kind in GROUND_TRUTHS:
        started = time.perf_counter()
        world = build_world(
            positives=positives,
            n_users=n_users,
            n_items=n_items,
            cfg=dataclasses.replace(cfg.simulate, ground_truth=kind),
        )
        truth = world.ground_truth
        recalls = ", ".join(f"{l2:g}: {recall:.4f}" for l2, recall in truth.holdout_recall.items())
        models = "; ".join(
            f"{m.name} a={m.slope:.3f} b={m.intercept:.3f} mean p={m.mean_click_probability:.4f} "
            f"top-10 p={m.top10_click_probability:.4f}"
            for m in world.click_models
        )
        print(
            f"{kind}: λ={truth.l2:g} (holdout recall@20 {recalls}); {models}; "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        servable = ~world.visible_mask(world.pools.simulated)
        scores[kind] = truth.standardised_scores
    assert servable is not None
    log_popularity = np.log1p(np.bincount(positives["item_idx"], minlength=n_items))
    tops = {kind: np.argsort(-np.where(servable, z, -np.inf), axis=1)[:, :10] for kind, z in scores.items()}
    for kind, top in tops.items():
        print(f"{kind}: mean log(1 + popularity) of a user's true top 10 = {log_popularity[top].mean():.2f}")
    for first, second in itertools.combinations(GROUND_TRUTHS, 2):
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops[first], tops[second], strict=True)])
        spearman = np.mean(
            [
                np.corrcoef(ranks(a[mask]), ranks(b[mask]))[0, 1]
                for a, b, mask in zip(scores[first], scores[second], servable, strict=True)
            ]
        )
        print(f"{first} vs {second}: top-10 overlap {overlap:.3f}, mean per-user Spearman {spearman:.3f}")


if __name__ == "__main__":
    main()
