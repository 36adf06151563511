"""Exploration policies that serve slates and log their propensities.

Every policy has a vectorised `select_batch` (one slate per row of scores). For greedy, LinUCB, Thompson,
semantic-cluster and MMR it equals `select` called row by row with the same Generator, draw for draw; for
ε-greedy and Boltzmann it has the same law but draws in another order.

Modules: `base` (the `Policy` interface, `Slate`/`SlateBatch`, `deviation_rate`, row-wise top-k), `simple`
(greedy, ε-greedy, Boltzmann/Plackett-Luce), `linear` (LinUCB and Thompson sampling on
item-tower vectors, per-user Bayesian linear model with Sherman–Morrison updates), `semantic` (k-means text
clusters, semantic-cluster exploration with per-user Beta Thompson sampling), `mmr` (maximal marginal
relevance), `novelty` (LinUCB with a text-cluster novelty bonus), `registry` (every policy class by name:
`policy_names()`, `register_policy(cls)` for an extension's policy), `spec` (`PolicySpec(name,
exploration_rate, params)`, the one builder `build(**resources)` and `PolicySpec.from_config`). What a
policy is built on (item vectors, text embeddings, candidates, clusters, a linear model) is declared by
class attributes of `Policy`.

Serving loop, for every policy alike::

    policy = PolicySpec("epsilon_greedy", 0.1).build()
    state = policy.initial_state(history_items=visible_history)
    slate = policy.select(scores=scores, excluded=seen_or_consumed, k=10, rng=rng, state=state)
    policy.update(state=state, items=slate.items, rewards=clicks, scores=scores)

`slate.propensities[s]` is the probability of `slate.items[s]` at slot s given slots 0..s−1;
`slate.explored[s]` says whether slot s explored; `slate.deviation_rate` is δ against `slate.greedy_items`.
`policy.slate_propensities(scores=..., excluded=..., items=logged_items, state=...)` gives the same per-slot
probabilities for any logged slate (e.g. another policy's): the target propensities of off-policy evaluation.
Randomness comes only from the Generator passed to `select`.
"""
