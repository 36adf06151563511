"""The churn world: new items withheld from the towers and the visible histories, known to the ground truth,
served only from their arrival visit; new-item and first-click outcomes; common random numbers kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.data.processed import SPLIT_NAMES
from explorec.simulation.churn import Arrivals, draw_arrivals
from explorec.simulation.environment import SimulationWorld, build_world
from explorec.simulation.ground_truth import LeakageError, restrict_dataset
from explorec.simulation.metrics import (
    first_item_clicks,
    first_new_cluster_click,
    new_item_metrics,
    visits_until_first_click,
)
from explorec.simulation.recommender import (
    check_tower_training_data,
    stand_in_recommender,
    tower_cache_key,
    two_tower_recommender,
)
from explorec.simulation.runner import (
    Episode,
    EpisodeInputs,
    PolicyResources,
    make_policy,
    policy_specs,
    run_episode,
)
from explorec.simulation.simulate import CHURN_METRICS, SimulationResult, run_simulation, world_from_dataset
from tests.unit.simulation.conftest import (
    N_ITEMS,
    N_USERS,
    small_simulate_config,
    synthetic_positives,
    synthetic_text_embeddings,
)
from tests.unit.simulation.test_two_tower_recommender import FitSpy, rated_dataset, tiny_config

CHURN = {"world": "churn", "churn_share": 0.2, "churn_initial_share": 0.25}


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user_idx"].astype(int), frame["item_idx"].astype(int), strict=True))


def test_arrivals_withhold_the_share_and_trickle_in_over_the_horizon() -> None:
    eligible = np.arange(10, 50)
    arrivals = draw_arrivals(
        eligible_items=eligible, n_items=50, share=0.25, initial_share=0.3, n_visits=5, seed=1
    )
    new = arrivals.new_items
    assert new.size == 10 and set(new) <= set(eligible)
    # 3 enter at visit 0; the other 7 at 1 + ⌊j·4/7⌋ = 1, 1, 2, 2, 3, 3, 4
    assert sorted(arrivals.visit[new].tolist()) == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert (arrivals.visit[~arrivals.new] == 0).all()
    assert arrivals.unavailable(2).sum() == 3  # the items of visits 3 and 4
    assert arrivals.facts() == {"n_new_items": 10, "n_new_at_visit_0": 3, "max_new_per_later_visit": 2}
    again = draw_arrivals(
        eligible_items=eligible, n_items=50, share=0.25, initial_share=0.3, n_visits=5, seed=1
    )
    other = draw_arrivals(
        eligible_items=eligible, n_items=50, share=0.25, initial_share=0.3, n_visits=5, seed=2
    )
    np.testing.assert_array_equal(again.visit, arrivals.visit)
    assert not np.array_equal(other.new, arrivals.new)


@pytest.fixture(scope="module")
def worlds() -> tuple[SimulationWorld, SimulationWorld]:
    """The static and the churn world of the small configuration on the synthetic positives."""
    positives = synthetic_positives()
    static = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=small_simulate_config())
    churn_cfg = replace(small_simulate_config(), **CHURN)
    churn = build_world(
        positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=churn_cfg, items_with_text=np.arange(80)
    )
    return static, churn


def test_new_items_are_withheld_from_training_and_histories_but_known_to_the_ground_truth(worlds) -> None:
    static, churn = worlds
    assert not static.arrivals.churns
    new = churn.arrivals.new_items
    assert new.size == round(0.2 * 80) and (new < 80).all()  # only items with text become new
    assert not churn.training["item_idx"].isin(new).any()
    assert not churn.visible["item_idx"].isin(new).any()
    # every simulated positive is still there: a visible positive of a new item became a hidden one
    assert _pairs(churn.visible) | _pairs(churn.hidden) == _pairs(static.visible) | _pairs(static.hidden)
    moved = _pairs(static.visible[static.visible["item_idx"].isin(new)])
    assert moved and moved <= _pairs(churn.hidden)
    # the ground truth is fitted on every positive: the same scores in both worlds, informative for new items
    np.testing.assert_array_equal(
        churn.ground_truth.standardised_scores, static.ground_truth.standardised_scores
    )
    assert churn.ground_truth.standardised_scores[:, new].std() > 0.1


def _inputs(arrivals: Arrivals, n_users: int = 6, visits: int = 4, k: int = 3) -> EpisodeInputs:
    rng = np.random.default_rng(3)
    n_items = arrivals.visit.size
    visible = rng.random((n_users, n_items)) < 0.1
    visible[:, arrivals.new] = False
    return EpisodeInputs(
        prior=rng.uniform(0.0, 0.1, size=(n_users, n_items)),
        probabilities=rng.uniform(0.0, 0.3, size=(n_users, n_items)),
        click_uniforms=rng.random((n_users, visits, k)),
        visible_mask=visible,
        visible_items=[np.flatnonzero(row) for row in visible],
        position_weights=1.0 / np.log2(np.arange(2, k + 2)),
        n_visits=visits,
        seed=3,
        replication=0,
        noise_std=0.2,
        prior_std=0.05,
        features=np.column_stack([np.ones(n_items), rng.normal(size=(n_items, 3))]),
        arrival_visit=arrivals.visit,
    )


@pytest.mark.parametrize(
    "name", ["oracle", "greedy_online", "epsilon_greedy", "linucb", "interest_transition"]
)
def test_no_item_is_served_before_its_arrival(name: str) -> None:
    arrivals = draw_arrivals(
        eligible_items=np.arange(60), n_items=60, share=0.5, initial_share=0.2, n_visits=4, seed=0
    )
    inputs = _inputs(arrivals)
    rates = {} if name in ("oracle", "greedy_online") else {name: [1.0]}
    spec = next(s for s in policy_specs(rates) if s.label == name or (s.policy_name == name and s.online))
    resources = PolicyResources(
        augmented_vectors=inputs.features,
        text_embeddings=np.random.default_rng(0).normal(size=(60, 4)),
        item_clusters=np.arange(60) % 5,
        n_candidates=15,
        exploration_scale=0.5,
        cluster_transitions=np.ones((5, 5)),
    )
    episode = run_episode(spec=spec, policy=make_policy(spec, resources), inputs=inputs)
    for visit in range(inputs.n_visits):
        assert (arrivals.visit[episode.items[:, visit]] <= visit).all(), visit
    if name == "oracle":  # each visit the true best K among the items that have arrived and are unseen
        excluded = inputs.visible_mask.copy()
        rows = np.arange(excluded.shape[0])[:, None]
        for visit in range(inputs.n_visits):
            allowed = np.where(excluded | arrivals.unavailable(visit), -np.inf, inputs.probabilities)
            np.testing.assert_array_equal(episode.items[:, visit], np.argsort(-allowed, axis=1)[:, :3])
            excluded[rows, episode.items[:, visit]] = True
        assert arrivals.new[episode.items].any()  # it does serve new items once they are there


def test_first_click_outcomes_by_hand() -> None:
    # entity 0 clicked at visit 2 (from 0): 3 visits; entity 1 never (from 1, T = 4): 4 − 1 + 1 = 4;
    # entity 2: 1
    assert visits_until_first_click(
        first_click_visit=np.array([2, -1, 0]), start_visit=np.array([0, 1, 0]), n_visits=4
    ) == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match="before its start"):
        visits_until_first_click(first_click_visit=np.array([0]), start_visit=np.array([1]), n_visits=4)
    # 2 users, 3 visits, 2 slots; items 0..5; clusters: items 0,1 → 0; 2,3 → 1; 4,5 → 2
    items = np.array([[[0, 2], [4, 1], [3, 5]], [[1, 4], [2, 0], [5, 3]]])
    clicks = np.array(
        [[[False, False], [True, True], [True, False]], [[False, True], [True, False], [False, False]]]
    )
    np.testing.assert_array_equal(
        first_item_clicks(items=items, clicks=clicks, n_items=6), [-1, 1, 1, 2, 0, -1]
    )
    clusters = np.array([0, 0, 1, 1, 2, 2])
    # user 0 knows cluster 2: its first click (visit 1) is item 4 of cluster 2 → the new cluster 0 via item 1
    # at visit 1; user 1 knows clusters 0 and 2: first click in cluster 1 is item 2 at visit 1
    first = first_new_cluster_click(
        items=items, clicks=clicks, histories=[np.array([5]), np.array([0, 4])], item_clusters=clusters
    )
    np.testing.assert_array_equal(first, [1, 1])
    arrivals = Arrivals(
        visit=np.array([0, 0, 1, 0, 0, 2]), new=np.array([False, False, True, False, False, True])
    )
    episode = Episode(
        items=items,
        propensities=np.ones(items.shape),
        expected_rewards=np.full(items.shape, 0.1),
        clicks=clicks,
        deviation=np.zeros(3),
    )
    outcomes = new_item_metrics(episode=episode, arrivals=arrivals)
    # new items 2 (arrives visit 1) and 5 (visit 2): 4 of 12 slots; clicks on them: user 1's item 2 only
    assert outcomes["new_item_exposure_share"] == pytest.approx(4 / 12)
    assert outcomes["new_item_expected_clicks"] == pytest.approx(0.2)  # two new slots per user × 0.1
    assert outcomes["new_item_clicks"] == pytest.approx(0.5)
    assert outcomes["new_items_clicked_share"] == pytest.approx(0.5)
    # item 2: clicked on its arrival visit → 1; item 5: never, arrived at 2 of T = 3 → 3 − 2 + 1 = 2
    assert outcomes["new_item_first_click_visits"] == pytest.approx(1.5)


def test_the_towers_never_train_on_a_withheld_item(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import explorec.models.fit as fit_module

    dataset = rated_dataset()
    cfg = replace(tiny_config(), simulate=replace(tiny_config().simulate, **CHURN))
    world = world_from_dataset(dataset, cfg.simulate)
    new = world.arrivals.new_items
    assert new.size > 0
    # before the restriction every new item has interactions, so the guard would have something to find
    restricted_for_hidden_only = restrict_dataset(dataset, visible=world.visible, hidden=world.hidden)
    assert restricted_for_hidden_only.interactions(*SPLIT_NAMES)["item_idx"].isin(new).any()
    with pytest.raises(LeakageError, match="withheld"):
        check_tower_training_data(restricted_for_hidden_only, world)
    spy = FitSpy()
    monkeypatch.setattr(fit_module, "fit_two_tower", spy)
    outputs, _ = two_tower_recommender(
        dataset=dataset, world=world, text_embeddings=None, cfg=cfg, cache_dir=tmp_path
    )
    trained = spy.datasets[0]
    for name in SPLIT_NAMES:
        assert not trained.split(name)["item_idx"].isin(new).any(), name
    # the item tower still gives every new item a vector (its ID-less path) and the users a score for it
    assert np.isfinite(outputs.item_vectors[new]).all() and np.isfinite(outputs.scores[:, new]).all()
    static = world_from_dataset(dataset, tiny_config().simulate)
    assert tower_cache_key(dataset=dataset, world=world, cfg=cfg) != tower_cache_key(
        dataset=dataset, world=static, cfg=tiny_config()
    )


def _churn_result(out: Path) -> SimulationResult:
    cfg = replace(
        small_simulate_config(),
        **CHURN,
        n_replications=2,
        policy_rates={"epsilon_greedy": [0.0, 0.3], "semantic_cluster": [0.5], "interest_transition": [0.5]},
    )
    world = build_world(positives=synthetic_positives(), n_users=N_USERS, n_items=N_ITEMS, cfg=cfg)
    recommender = stand_in_recommender(
        training=world.training, n_users=N_USERS, n_items=N_ITEMS, users=world.pools.simulated, dimension=6
    )
    return run_simulation(
        world=world,
        recommender=recommender,
        text_embeddings=synthetic_text_embeddings(),
        cfg=cfg,
        output_dir=out,
        item_titles=[f"film {item}" for item in range(N_ITEMS)],
    )


def test_a_churn_simulation_reports_new_item_outcomes_with_common_random_numbers(tmp_path: Path) -> None:
    result = _churn_result(tmp_path / "one")
    assert result.world_info["world"] == "churn" and result.world_info["n_new_items"] == round(0.2 * N_ITEMS)
    table = result.per_replication.set_index(["calibration", "replication", "policy"])
    for metric in (*CHURN_METRICS, "new_items_clicked_share", "first_new_cluster_click_visits"):
        assert table[metric].notna().all(), metric
        values = table[metric].unstack("policy")
        assert np.array_equal(values["epsilon_greedy@0"], values["greedy_online"]), metric
    assert set(CHURN_METRICS) <= set(result.comparisons["metric"])
    assert (table["new_item_exposure_share"].unstack("policy")["oracle"] > 0).all()
    names = result.world_info["text_clusters"]
    assert len(names) == 4 and all(name.startswith("film ") for name in names)
    assert len(result.world_info["cluster_transitions"]) == 4
    assert "new items' outcomes" in result.markdown and "Text clusters" in result.markdown
    logs = result.logs  # epsilon_greedy@0.3's slates: nothing new before its arrival
    world = build_world(
        positives=synthetic_positives(),
        n_users=N_USERS,
        n_items=N_ITEMS,
        cfg=replace(small_simulate_config(), **CHURN),
    )
    arrival = world.arrivals.visit
    assert (arrival[logs["item"].to_numpy()] <= logs["visit"].to_numpy()).all()


def test_the_ope_cross_check_covers_the_simulated_values_with_items_still_to_arrive(tmp_path: Path) -> None:
    # every new item arrives at visit 1, so the logged first-visit slates exclude 27 of the 90 items
    small = small_simulate_config()
    cfg = replace(
        small,
        **{**CHURN, "churn_share": 0.3, "churn_initial_share": 0.0},
        n_visits=2,
        n_replications=40,
        calibrations=small.calibrations[:1],
        policy_rates={"epsilon_greedy": [0.1, 0.5]},
        ope_logging_policy="epsilon_greedy@0.5",
        ope_target_policies=["epsilon_greedy@0.1", "greedy_online"],
    )
    world = build_world(positives=synthetic_positives(), n_users=N_USERS, n_items=N_ITEMS, cfg=cfg)
    assert world.arrivals.unavailable(0).sum() == 27
    recommender = stand_in_recommender(
        training=world.training, n_users=N_USERS, n_items=N_ITEMS, users=world.pools.simulated, dimension=6
    )
    result = run_simulation(
        world=world,
        recommender=recommender,
        text_embeddings=synthetic_text_embeddings(),
        cfg=cfg,
        output_dir=tmp_path,
    )
    assert result.ope["covered"].all(), result.ope.to_string()
