"""The simulation loop: determinism, common random numbers, the oracle bound, calibration, OPE cross-check."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.config.simulation import SimulateConfig
from explorec.data.processed import ProcessedDataset
from explorec.simulation.calibration import top_servable
from explorec.simulation.environment import SimulationWorld, build_world
from explorec.simulation.recommender import RecommenderOutputs, stand_in_recommender
from explorec.simulation.simulate import (
    SimulationResult,
    assemble_simulation,
    plan_simulation,
    prior_for_calibration,
    run_simulation,
    run_unit,
    world_from_dataset,
)
from tests.unit.simulation.conftest import (
    N_ITEMS,
    N_USERS,
    small_simulate_config,
    synthetic_positives,
    synthetic_text_embeddings,
)


def _world_and_recommender(
    positives: pd.DataFrame, cfg: SimulateConfig
) -> tuple[SimulationWorld, RecommenderOutputs]:
    world = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=cfg)
    recommender = stand_in_recommender(
        training=world.training, n_users=N_USERS, n_items=N_ITEMS, users=world.pools.simulated, dimension=6
    )
    return world, recommender


def _simulate(positives: pd.DataFrame, text: np.ndarray, cfg: SimulateConfig, out: Path) -> SimulationResult:
    world, recommender = _world_and_recommender(positives, cfg)
    return run_simulation(world=world, recommender=recommender, text_embeddings=text, cfg=cfg, output_dir=out)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> SimulationResult:
    """One simulation of the small configuration, shared by the tests of this module (read-only)."""
    return _simulate(
        synthetic_positives(),
        synthetic_text_embeddings(),
        small_simulate_config(),
        tmp_path_factory.mktemp("simulation"),
    )


def test_calibration_hits_its_targets(positives: pd.DataFrame, small_config: SimulateConfig) -> None:
    world = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=small_config)
    users = world.pools.simulated
    for target, model in zip(small_config.calibrations, world.click_models, strict=True):
        p = world.click_probabilities(users, model)
        top = model.probabilities(top_servable(world.noisy_scores(users), world.visible_mask(users)))
        assert p.mean() == pytest.approx(target.mean_click_probability, abs=1e-4)
        assert top.mean() == pytest.approx(target.top10_click_probability, abs=1e-3)


def test_same_seed_same_result(
    result: SimulationResult,
    positives: pd.DataFrame,
    text_embeddings: np.ndarray,
    small_config: SimulateConfig,
    tmp_path: Path,
) -> None:
    again = _simulate(positives, text_embeddings, small_config, tmp_path / "again")
    columns = [c for c in result.per_replication.columns if c != "seconds"]
    pd.testing.assert_frame_equal(result.per_replication[columns], again.per_replication[columns])
    pd.testing.assert_frame_equal(result.logs, again.logs)
    other = _simulate(positives, text_embeddings, replace(small_config, seed=4), tmp_path / "other")
    assert not np.allclose(
        result.per_replication["realised_clicks"], other.per_replication["realised_clicks"]
    )


def test_common_random_numbers_make_identical_policies_identical(result: SimulationResult) -> None:
    table = result.per_replication.set_index(["calibration", "replication", "policy"])
    for metric in ("expected_clicks", "realised_clicks", "new_clusters_clicked", "hidden_recall"):
        values = table[metric].unstack("policy")
        # ε-greedy at rate 0 draws randomness but never uses it: it must match greedy_online exactly.
        assert np.array_equal(values["epsilon_greedy@0"], values["greedy_online"])
    curves = result.curves.set_index(["calibration", "replication", "visit", "policy"])[
        "cumulative_expected_clicks"
    ]
    assert np.array_equal(
        curves.unstack("policy")["epsilon_greedy@0"], curves.unstack("policy")["greedy_online"]
    )


def test_oracle_is_an_upper_bound_in_expectation(result: SimulationResult) -> None:
    table = result.per_replication.pivot_table(
        index=["calibration", "replication"], columns="policy", values="expected_clicks"
    )
    others = table.drop(columns="oracle")
    assert (others.le(table["oracle"] + 1e-12, axis=0)).all().all()
    assert (result.per_replication.loc[result.per_replication.policy == "oracle", "regret"] == 0).all()
    assert (result.per_replication["regret"] >= -1e-12).all()


def test_baselines_and_tables_are_complete(result: SimulationResult, tmp_path: Path) -> None:
    for calibration in ("main", "sparse"):
        policies = set(result.summary.loc[result.summary.calibration == calibration, "policy"])
        assert {"oracle", "static", "greedy_online", "random"} <= policies
    compared = result.comparisons
    assert set(compared["control"]) == {"greedy_online", "static"}
    assert (compared["p_holm"] >= compared["p_value"] - 1e-12).all()
    assert "static" in result.markdown and "greedy_online" in result.markdown
    for path in result.plots.values():
        assert path.is_file() and path.stat().st_size > 0
    logs = result.logs
    assert {"user", "visit", "slot", "item", "propensity", "click", "expected_reward"} <= set(logs.columns)
    assert logs["propensity"].between(0, 1).all()
    served = logs.groupby(["calibration", "replication", "user"])["item"]
    assert (served.nunique() == served.size()).all()  # no item is served twice to a user


def test_served_items_never_repeat_or_come_from_the_visible_history(
    result: SimulationResult, positives: pd.DataFrame, small_config: SimulateConfig
) -> None:
    world, _ = _world_and_recommender(positives, small_config)
    visible = set(map(tuple, world.visible[["user_idx", "item_idx"]].to_numpy()))
    assert not any((u, i) in visible for u, i in result.logs[["user", "item"]].to_numpy())


def test_ope_estimate_from_another_policys_logs_covers_the_simulated_value(
    positives: pd.DataFrame, text_embeddings: np.ndarray, small_config: SimulateConfig, tmp_path: Path
) -> None:
    cfg = replace(
        small_config,
        n_visits=1,
        n_replications=40,
        calibrations=small_config.calibrations[:1],
        policy_rates={"epsilon_greedy": [0.1, 0.5]},
        ope_logging_policy="epsilon_greedy@0.5",
        ope_target_policies=["epsilon_greedy@0.1", "greedy_online", "static"],
    )
    result = _simulate(positives, text_embeddings, cfg, tmp_path / "ope")
    assert set(result.ope["target"]) == {"epsilon_greedy@0.1", "greedy_online", "static"}
    assert set(result.ope["estimator"]) == {"ips", "snips"}
    assert result.ope["covered"].all(), result.ope.to_string()


def test_simulate_with_stand_in_from_a_processed_dataset(
    positives: pd.DataFrame, text_embeddings: np.ndarray, small_config: SimulateConfig, tmp_path: Path
) -> None:
    ratings = positives.assign(rating=np.where(np.arange(len(positives)) % 5 == 0, 2.0, 5.0))
    dataset = ProcessedDataset(
        path=tmp_path,
        train=ratings,
        valid=ratings.iloc[:0],
        test=ratings.iloc[:0],
        items=pd.DataFrame({"item_idx": np.arange(N_ITEMS)}),
        users=pd.DataFrame({"user_idx": np.arange(N_USERS)}),
        manifest={},
    )
    cfg = replace(
        small_config,
        min_user_positives=8,
        n_replications=2,
        policy_rates={"epsilon_greedy": [0.3]},
        ope_target_policies=["greedy_online"],
    )
    world = world_from_dataset(dataset, cfg)
    recommender = stand_in_recommender(
        training=world.training,
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        users=world.pools.simulated,
        dimension=cfg.stand_in_dimension,
    )
    result = run_simulation(
        world=world, recommender=recommender, text_embeddings=text_embeddings, cfg=cfg, output_dir=tmp_path
    )
    assert result.world_info["recommender"] == "pure_svd_6"
    assert set(result.summary["policy"]) == {
        "oracle",
        "static",
        "greedy_online",
        "random",
        "epsilon_greedy@0.3",
    }
    assert result.world_info["n_pool_users"] == cfg.test_users


def test_episodes_on_threads_equal_episodes_in_sequence(
    result: SimulationResult,
    positives: pd.DataFrame,
    text_embeddings: np.ndarray,
    small_config: SimulateConfig,
    tmp_path: Path,
) -> None:
    """Running the policies' episodes on two threads changes nothing but the timing column."""
    assert small_config.episode_workers == 2
    serial = _simulate(positives, text_embeddings, replace(small_config, episode_workers=1), tmp_path)
    columns = [c for c in result.per_replication.columns if c != "seconds"]
    pd.testing.assert_frame_equal(result.per_replication[columns], serial.per_replication[columns])
    pd.testing.assert_frame_equal(result.logs, serial.logs)
    pd.testing.assert_frame_equal(result.curves, serial.curves)


def test_units_run_in_any_order_and_process_give_the_sequential_tables(
    result: SimulationResult,
    positives: pd.DataFrame,
    text_embeddings: np.ndarray,
    small_config: SimulateConfig,
    tmp_path: Path,
) -> None:
    """Units are pure: run last-first, one thread each, through a pickle round trip (another process's
    view), their assembled tables equal the sequential run's; a missing unit is refused."""
    world, recommender = _world_and_recommender(positives, small_config)
    plan = plan_simulation(
        world=world, recommender=recommender, text_embeddings=text_embeddings, cfg=small_config
    )
    units = plan.units()
    assert len(units) == len(world.click_models) * small_config.n_replications
    shipped = pickle.loads(pickle.dumps(plan))
    results = [pickle.loads(pickle.dumps(run_unit(shipped, unit, episode_workers=1))) for unit in units[::-1]]
    assembled = assemble_simulation(plan, results, output_dir=tmp_path)
    columns = [c for c in result.per_replication.columns if c != "seconds"]
    pd.testing.assert_frame_equal(assembled.per_replication[columns], result.per_replication[columns])
    pd.testing.assert_frame_equal(assembled.curves, result.curves)
    pd.testing.assert_frame_equal(assembled.logs, result.logs)
    pd.testing.assert_frame_equal(assembled.comparisons, result.comparisons)
    with pytest.raises(ValueError, match="one result per unit"):
        assemble_simulation(plan, results[1:], output_dir=tmp_path)


def test_popularity_aware_prior_is_fitted_and_recorded(
    positives: pd.DataFrame, text_embeddings: np.ndarray, small_config: SimulateConfig, tmp_path: Path
) -> None:
    cfg = replace(small_config, prior_popularity=True, n_replications=2)
    world, recommender = _world_and_recommender(positives, cfg)
    prior = prior_for_calibration(
        world=world,
        recommender=recommender,
        click_model=world.click_models[0],
        seed=cfg.seed,
        index=0,
        with_popularity=True,
    )
    assert prior.item_log_popularity == pytest.approx(np.log1p(world.item_popularity()[0]))
    assert prior.popularity_slope != 0.0
    plain = prior_for_calibration(
        world=world, recommender=recommender, click_model=world.click_models[0], seed=cfg.seed, index=0
    )
    assert plain.item_log_popularity is None and plain.popularity_slope == 0.0
    result = run_simulation(
        world=world, recommender=recommender, text_embeddings=text_embeddings, cfg=cfg, output_dir=tmp_path
    )
    recorded = result.world_info["calibrations"][world.click_models[0].name]
    assert recorded["platt_popularity_slope"] == pytest.approx(prior.popularity_slope)
