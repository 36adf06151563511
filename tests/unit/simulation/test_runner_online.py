"""The batched online residual model: several visits of Woodbury steps equal the closed-form posterior."""

from __future__ import annotations

import numpy as np

from explorec.simulation.online import OnlineResidualModel


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
