"""The episode loop's shortcuts: Woodbury visits equal the closed-form posterior, the oracle's one ranking
equals visit-by-visit serving, and batched policies give the episodes of the per-user loop."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.policies.base import Policy, top_k_rows
from explorec.simulation.online import OnlineResidualModel
from explorec.simulation.runner import (
    EpisodeInputs,
    PolicyResources,
    make_policy,
    policy_specs,
    run_episode,
    run_episodes,
)


def test_visits_of_woodbury_steps_equal_the_closed_form_posterior_and_states_follow() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items, k, dimension = 3, 40, 5, 6
    features = rng.normal(size=(n_items, dimension))
    prior = rng.uniform(0.0, 0.2, size=(n_users, n_items))
    weights = 1.0 / np.log2(np.arange(2, k + 2))
    model = OnlineResidualModel(features=features, n_users=n_users, noise_std=0.2, prior_std=0.05)
    states = [model.user_state(user) for user in range(n_users)]
    rows, targets = [[] for _ in range(n_users)], [[] for _ in range(n_users)]
    for _ in range(6):
        items = np.stack([rng.choice(n_items, size=k, replace=False) for _ in range(n_users)])
        clicks = (rng.random((n_users, k)) < 0.3).astype(float)
        model.observe(items=items, clicks=clicks, prior=prior, position_weights=weights)
        for user in range(n_users):
            rows[user].append(weights[:, None] * features[items[user]])
            targets[user].append(clicks[user] - weights * prior[user, items[user]])
    for user in range(n_users):
        f, y = np.concatenate(rows[user]), np.concatenate(targets[user])
        precision = (0.2 / 0.05) ** 2 * np.eye(dimension) + f.T @ f
        np.testing.assert_allclose(model.a_inverse[user], np.linalg.inv(precision), rtol=1e-9, atol=1e-13)
        theta = np.linalg.solve(precision, f.T @ y)
        np.testing.assert_allclose(model.weights()[user], theta, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(model.mean_scores(prior)[user], prior[user] + features @ theta, atol=1e-12)
        # The linear policies' state views share the model's memory: they see every update.
        np.testing.assert_array_equal(states[user].a_inverse, model.a_inverse[user])
        np.testing.assert_array_equal(states[user].theta_mean, model.a_inverse[user] @ model.b[user])


def _inputs(seed: int, n_users: int = 7, n_items: int = 120, visits: int = 5, k: int = 4) -> EpisodeInputs:
    """Episode inputs with tied click probabilities and a visible history per user."""
    rng = np.random.default_rng(seed)
    visible = rng.random((n_users, n_items)) < 0.15
    return EpisodeInputs(
        prior=rng.uniform(0.0, 0.1, size=(n_users, n_items)),
        probabilities=np.round(rng.uniform(0.0, 0.1, size=(n_users, n_items)), 2),  # many ties
        click_uniforms=rng.random((n_users, visits, k)),
        visible_mask=visible,
        visible_items=[np.flatnonzero(row) for row in visible],
        position_weights=1.0 / np.log2(np.arange(2, k + 2)),
        n_visits=visits,
        seed=seed,
        replication=0,
        noise_std=0.2,
        prior_std=0.05,
        features=np.column_stack([np.ones(n_items), rng.normal(size=(n_items, 3))]),
    )


def _resources(inputs: EpisodeInputs, *, text_seed: int, novelty_scale: float = 0.0) -> PolicyResources:
    """Policy resources for 150 items in 6 clusters of 25, with random 5-d text embeddings."""
    return PolicyResources(
        augmented_vectors=inputs.features,
        text_embeddings=np.random.default_rng(text_seed).normal(size=(150, 5)),
        item_clusters=np.repeat(np.arange(6), 25),
        n_candidates=20,
        exploration_scale=0.5,
        novelty_scale=novelty_scale,
        cluster_transitions=np.random.default_rng(text_seed).integers(0, 9, size=(6, 6)).astype(float),
    )


def test_the_oracle_order_equals_serving_the_best_remaining_items_visit_by_visit() -> None:
    inputs = _inputs(seed=2)
    episode = run_episode(spec=policy_specs({})[0], policy=None, inputs=inputs)
    excluded = inputs.visible_mask.copy()
    rows = np.arange(excluded.shape[0])[:, None]
    for visit in range(inputs.n_visits):
        expected = top_k_rows(np.where(excluded, -np.inf, inputs.probabilities), 4)
        np.testing.assert_array_equal(episode.items[:, visit], expected)
        excluded[rows, expected] = True
    assert (episode.propensities == 1.0).all()


@pytest.mark.parametrize(
    ("name", "rate"),
    [
        ("linucb", 1.0),
        ("thompson", 0.5),
        ("semantic_cluster", 0.5),
        ("mmr", 0.5),
        ("greedy", 0.0),
        ("linucb_novelty", 1.0),
        ("interest_transition", 0.5),
    ],
)
def test_episodes_served_in_batches_equal_episodes_served_user_by_user(
    name: str, rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _inputs(seed=4, n_items=150)
    resources = _resources(inputs, text_seed=9, novelty_scale=0.5)
    spec = next(s for s in policy_specs({name: [rate]}) if s.policy_name == name and s.online)
    batched = run_episode(spec=spec, policy=make_policy(spec, resources), inputs=inputs)
    policy = make_policy(spec, resources)
    monkeypatch.setattr(type(policy), "select_batch", Policy.select_batch)  # the per-user loop
    one_by_one = run_episode(spec=spec, policy=policy, inputs=inputs)
    for field in ("items", "propensities", "clicks", "expected_rewards", "deviation"):
        np.testing.assert_array_equal(getattr(batched, field), getattr(one_by_one, field), err_msg=field)


def test_episodes_on_two_threads_equal_serial_episodes_in_job_order() -> None:
    inputs = _inputs(seed=5, n_items=150)
    resources = _resources(inputs, text_seed=3)
    specs = policy_specs({"thompson": [0.5], "semantic_cluster": [0.5], "mmr": [0.5], "linucb": [1.0]})

    def jobs() -> list:
        return [(spec, make_policy(spec, resources), None) for spec in specs]

    serial = list(run_episodes(jobs(), inputs=inputs, workers=1))
    threaded = list(run_episodes(jobs(), inputs=inputs, workers=2))
    assert len(serial) == len(threaded) == len(specs)
    for (first, seconds), (second, _) in zip(serial, threaded, strict=True):
        assert seconds > 0
        for field in ("items", "propensities", "clicks", "expected_rewards", "deviation"):
            np.testing.assert_array_equal(getattr(first, field), getattr(second, field), err_msg=field)
    with pytest.raises(ValueError, match="workers"):
        list(run_episodes(jobs(), inputs=inputs, workers=0))


def test_linucb_novelty_episodes_share_the_online_posterior_and_track_clusters_from_the_history() -> None:
    """novelty_scale 0 gives linucb's episode; with a bonus its states follow the history and the clicks."""
    inputs = _inputs(seed=6, n_items=150, visits=6)
    clusters = np.repeat(np.arange(6), 25)

    def resources(novelty_scale: float) -> PolicyResources:
        return PolicyResources(
            augmented_vectors=inputs.features,
            text_embeddings=np.zeros((150, 2)),
            item_clusters=clusters,
            n_candidates=20,
            exploration_scale=0.5,
            novelty_scale=novelty_scale,
        )

    specs = {s.policy_name: s for s in policy_specs({"linucb": [1.0], "linucb_novelty": [1.0]})}
    linucb = run_episode(
        spec=specs["linucb"], policy=make_policy(specs["linucb"], resources(0.0)), inputs=inputs
    )
    plain_policy = make_policy(specs["linucb_novelty"], resources(0.0))
    plain = run_episode(spec=specs["linucb_novelty"], policy=plain_policy, inputs=inputs)
    np.testing.assert_array_equal(plain.items, linucb.items)

    policy = make_policy(specs["linucb_novelty"], resources(0.5))
    seen_states: list = []
    original = policy.observe_clusters

    def observe(*, state, items, clicks) -> None:
        seen_states.append(state)
        original(state=state, items=items, clicks=clicks)

    policy.observe_clusters = observe  # type: ignore[method-assign]
    episode = run_episode(spec=specs["linucb_novelty"], policy=policy, inputs=inputs)
    n_users = inputs.prior.shape[0]
    assert len(seen_states) == n_users * inputs.n_visits
    for user, state in enumerate(seen_states[-n_users:]):
        engaged = np.zeros(6, dtype=bool)
        engaged[clusters[inputs.visible_items[user]]] = True
        engaged[clusters[episode.items[user][episode.clicks[user]]]] = True
        np.testing.assert_array_equal(state.engaged, engaged)
        np.testing.assert_array_equal(
            state.served, np.bincount(clusters[episode.items[user].ravel()], minlength=6)
        )
