"""The interactive simulation loop: every policy serves every simulated user T visits, R replications.

Per visit and policy, all users are served at once (`Policy.select_batch`; policies without a batched
version loop inside it). Common random numbers: click uniforms come from (seed, replication, user), policy
randomness from (seed, replication, visit), the frozen noise ε from (seed, user); so two identical policies
produce identical outcomes and differences between policies are paired. Clicks: click = U < θ_k·p.

Scores the policies see: the calibrated prior (Platt-scaled recommender score) for `static` and `random`;
for every online policy the posterior mean prior + x_iᵀŵ_u of the shared residual model (`online.py`),
updated with the clicks of its own slates after every visit. linucb/thompson receive the prior and the
user's posterior state (built on the same augmented vectors), which gives them the same mean plus its
uncertainty. The oracle serves the true top K by p each visit (no repeats) and is optimal in expectation.
Excluded at every visit: the visible history and everything served before (hence everything clicked), and in
the churn world every item whose arrival visit has not come yet (for the oracle too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from explorec.policies.base import Policy, SlateBatch
from explorec.policies.linear import ThompsonPolicy
from explorec.policies.novelty import LinUCBNoveltyPolicy
from explorec.policies.simple import top_k_rows
from explorec.policies.spec import PolicySpec
from explorec.simulation.ground_truth import stream
from explorec.simulation.online import OnlineResidualModel

POLICY_STREAM, CLICK_STREAM, PLATT_STREAM = 21, 22, 23
BASELINE_LABELS = ("oracle", "static", "greedy_online", "random")
THOMPSON_PROPENSITY_DRAWS = 64


@dataclass(frozen=True)
class SimulatedPolicy:
    """One simulated configuration: its label, the policy it serves (None: the oracle), online or not."""

    label: str
    policy: PolicySpec | None
    online: bool

    @property
    def policy_name(self) -> str:
        """The served policy's name ('oracle' for the oracle)."""
        return "oracle" if self.policy is None else self.policy.name

    @property
    def exploration_rate(self) -> float:
        """The served policy's exploration rate (0 for the oracle)."""
        return 0.0 if self.policy is None else self.policy.exploration_rate

    @property
    def learns_linear_model(self) -> bool:
        """Whether it is served from the prior with the shared online model's posterior as its state."""
        return self.policy is not None and self.policy.policy_class.learns_linear_model


def policy_label(name: str, exploration_rate: float) -> str:
    """The label of an exploring policy configuration, e.g. 'epsilon_greedy@0.1'."""
    return f"{name}@{exploration_rate:g}"


def policy_specs(policy_rates: dict[str, list[float]]) -> list[SimulatedPolicy]:
    """The four baselines followed by every exploring policy at every configured rate."""
    specs = [
        SimulatedPolicy("oracle", None, online=False),
        SimulatedPolicy("static", PolicySpec("greedy", 0.0), online=False),
        SimulatedPolicy("greedy_online", PolicySpec("greedy", 0.0), online=True),
        SimulatedPolicy("random", PolicySpec("epsilon_greedy", 1.0), online=False),
    ]
    for name, rates in policy_rates.items():
        specs.extend(
            SimulatedPolicy(policy_label(name, rate), PolicySpec(name, float(rate)), online=True)
            for rate in rates
        )
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate policy configurations: {labels}")
    return specs


@dataclass(frozen=True)
class PolicyResources:
    """What policies are built from: augmented item vectors, text embeddings, clusters, candidate count.

    exploration_scale: linucb/thompson's bonus or posterior scale at rate 1; novelty_scale: linucb_novelty's
    cluster-novelty weight λ at rate 1; cluster_transitions: counts of cluster changes in the training
    histories (for policies that learn cluster transitions).
    """

    augmented_vectors: np.ndarray
    text_embeddings: np.ndarray
    item_clusters: np.ndarray
    n_candidates: int
    exploration_scale: float
    novelty_scale: float = 0.0
    cluster_transitions: np.ndarray | None = None


def make_policy(spec: SimulatedPolicy, resources: PolicyResources) -> Policy | None:
    """Build the explorec policy of a spec (None for the oracle) on the resources its class declares."""
    if spec.policy is None:
        return None
    return spec.policy.build(**policy_resources(spec.policy.policy_class, resources))


def policy_resources(policy_type: type[Policy], resources: PolicyResources) -> dict[str, object]:
    """The simulator's keyword arguments for a policy class, read from what the class declares it uses.

    Clustering policies get the simulator's text clusters (served, they build the same k-means clusters
    from the bundle's text embeddings); linucb_novelty also gets novelty_bonus_scale.
    """
    params: dict[str, object] = {}
    if policy_type.uses_item_vectors:
        params["item_vectors"] = resources.augmented_vectors
    if policy_type.reranks_candidates:
        params["n_candidates"] = resources.n_candidates
    if policy_type.learns_linear_model:
        params["exploration_scale"] = resources.exploration_scale
    if policy_type.clusters_text:
        params["item_clusters"] = resources.item_clusters
    elif policy_type.uses_text_embeddings:
        params["text_embeddings"] = resources.text_embeddings
    if issubclass(policy_type, LinUCBNoveltyPolicy):
        params["novelty_scale"] = resources.novelty_scale
    if policy_type.learns_cluster_transitions:
        if resources.cluster_transitions is None:
            raise ValueError(f"{policy_type.name} needs the cluster transitions of the training histories")
        params["cluster_transitions"] = resources.cluster_transitions
    if issubclass(policy_type, ThompsonPolicy):
        params["propensity_draws"] = THOMPSON_PROPENSITY_DRAWS
    return params


@dataclass
class Episode:
    """What one policy served over T visits in one replication: arrays (n_users, T, K) and δ per visit."""

    items: np.ndarray
    propensities: np.ndarray
    expected_rewards: np.ndarray
    clicks: np.ndarray
    deviation: np.ndarray
    target_propensities: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeInputs:
    """Everything fixed within one calibration and replication: prior, truth, uniforms, exclusions."""

    prior: np.ndarray
    probabilities: np.ndarray
    click_uniforms: np.ndarray
    visible_mask: np.ndarray
    visible_items: list[np.ndarray]
    position_weights: np.ndarray
    n_visits: int
    seed: int
    replication: int
    noise_std: float
    prior_std: float
    features: np.ndarray
    arrival_visit: np.ndarray | None = None
    """Per item, the visit (0-based) at which it enters the catalogue; None: every item from the start."""

    def unavailable(self, visit: int) -> np.ndarray | None:
        """Items not yet in the catalogue at `visit` (None when every item is there from the start)."""
        if self.arrival_visit is None or not (self.arrival_visit > visit).any():
            return None
        return self.arrival_visit > visit


def click_uniforms(
    *, users: np.ndarray, n_visits: int, slate_size: int, seed: int, replication: int
) -> np.ndarray:
    """U[u, t, k] from (seed, replication, user): the same for every policy."""
    return np.stack(
        [stream(seed, CLICK_STREAM, replication, int(u)).random((n_visits, slate_size)) for u in users]
    )


def _policy_scores(
    spec: SimulatedPolicy, policy: Policy | None, prior: np.ndarray, model: OnlineResidualModel
) -> np.ndarray:
    """The scores a policy is served from this visit (see the module docstring)."""
    if not spec.online or spec.learns_linear_model:
        return prior
    return model.mean_scores(prior)


def oracle_order(inputs: EpisodeInputs) -> np.ndarray:
    """The oracle's items of all T visits, (n_users, T·K): the true top T·K by p, visible history excluded.

    Each visit the oracle serves the best K by p among items neither visible nor served before; with ties
    broken by the lower index that is visit t's slice [t·K, (t + 1)·K) of this one ranking.
    """
    k = inputs.position_weights.size
    return top_k_rows(np.where(inputs.visible_mask, -np.inf, inputs.probabilities), inputs.n_visits * k)


def oracle_visit(inputs: EpisodeInputs, excluded: np.ndarray, k: int) -> np.ndarray:
    """The oracle's items of one visit with arrivals: the true top K by p among the available items."""
    return top_k_rows(np.where(excluded, -np.inf, inputs.probabilities), k)


def _serve(
    *,
    policy: Policy | None,
    scores: np.ndarray,
    excluded: np.ndarray,
    oracle: np.ndarray | None,
    k: int,
    rng: np.random.Generator,
    states: list | None,
) -> SlateBatch:
    """One visit's slates for every user (`oracle`: the oracle's items of this visit)."""
    if policy is None:
        if oracle is None:
            raise ValueError("the oracle needs its items of this visit")
        items = oracle
        ones = np.ones(items.shape)
        return SlateBatch(items, ones, np.zeros(items.shape, bool), items)
    return policy.select_batch(scores=scores, excluded=excluded, k=k, rng=rng, states=states)


def _initial_states(
    spec: SimulatedPolicy, policy: Policy | None, inputs: EpisodeInputs, model: OnlineResidualModel
) -> list | None:
    """Per-user policy states: the shared model's views for linear policies, the policy's own otherwise.

    linucb_novelty's states hold the shared model's view beside their cluster counts.
    """
    if policy is None:
        return None
    if isinstance(policy, LinUCBNoveltyPolicy):
        return [
            policy.initial_state(history_items=items, linear=model.user_state(row))
            for row, items in enumerate(inputs.visible_items)
        ]
    if spec.learns_linear_model:
        return [model.user_state(row) for row in range(inputs.prior.shape[0])]
    states = [policy.initial_state(history_items=items) for items in inputs.visible_items]
    return None if all(state is None for state in states) else states


TargetPropensities = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(prior, online mean scores, excluded, served items) → target per-slot propensities (n_users, k)."""


def run_episode(
    *,
    spec: SimulatedPolicy,
    policy: Policy | None,
    inputs: EpisodeInputs,
    targets: dict[str, TargetPropensities] | None = None,
) -> Episode:
    """Serve every user T visits with one policy; record slates, propensities, expected rewards and clicks.

    `targets` (OPE) are evaluated on this policy's first-visit slates only (NaN afterwards): only there is
    the logging context the same as the target's own (see `ope_check`).
    """
    n_users = inputs.prior.shape[0]
    k, visits = inputs.position_weights.size, inputs.n_visits
    model = OnlineResidualModel(
        features=inputs.features,
        n_users=n_users,
        noise_std=inputs.noise_std,
        prior_std=inputs.prior_std,
    )
    states = _initial_states(spec, policy, inputs, model)
    excluded = inputs.visible_mask.copy()
    rows = np.arange(n_users)
    shape = (n_users, visits, k)
    episode = Episode(
        np.empty(shape, np.int64), np.empty(shape), np.empty(shape), np.empty(shape, bool), np.empty(visits)
    )
    targets = targets or {}
    episode.target_propensities = {label: np.full(shape, np.nan) for label in targets}
    arrivals = inputs.arrival_visit is not None
    order = oracle_order(inputs) if policy is None and not arrivals else None
    oracle = None
    for visit in range(visits):
        scores = _policy_scores(spec, policy, inputs.prior, model)
        rng = stream(inputs.seed, POLICY_STREAM, inputs.replication, visit)
        unavailable = inputs.unavailable(visit)
        served_from = excluded if unavailable is None else excluded | unavailable[None, :]
        if policy is None:  # the oracle: its best available items, or this visit's slice of its order
            if order is None:
                oracle = oracle_visit(inputs, served_from, k)
            else:
                oracle = order[:, visit * k : (visit + 1) * k]
        batch = _serve(
            policy=policy,
            scores=scores,
            excluded=served_from,
            oracle=oracle,
            k=k,
            rng=rng,
            states=states,
        )
        items = batch.items
        expected = inputs.position_weights[None, :] * inputs.probabilities[rows[:, None], items]
        clicks = inputs.click_uniforms[:, visit, :] < expected
        for label, target in targets.items() if visit == 0 else ():
            episode.target_propensities[label][:, visit] = target(
                inputs.prior, model.mean_scores(inputs.prior), served_from, items
            )
        episode.items[:, visit], episode.propensities[:, visit] = items, batch.propensities
        episode.expected_rewards[:, visit], episode.clicks[:, visit] = expected, clicks
        episode.deviation[visit] = batch.deviation_rate
        if spec.online:
            model.observe(
                items=items,
                clicks=clicks.astype(np.float64),
                prior=inputs.prior,
                position_weights=inputs.position_weights,
            )
            if isinstance(policy, LinUCBNoveltyPolicy) and states is not None:
                for row in range(n_users):  # the shared model above holds its posterior
                    policy.observe_clusters(state=states[row], items=items[row], clicks=clicks[row])
            elif states is not None and policy is not None and not spec.learns_linear_model:
                for row in range(n_users):
                    policy.update(
                        state=states[row],
                        items=items[row],
                        rewards=clicks[row].astype(np.float64),
                        scores=scores[row],
                    )
        excluded[rows[:, None], items] = True
    return episode


EpisodeJob = tuple[SimulatedPolicy, Policy | None, dict[str, TargetPropensities] | None]
"""One episode to run: the spec, its policy (None for the oracle) and its OPE targets (or None)."""


def run_episodes(
    jobs: Sequence[EpisodeJob], *, inputs: EpisodeInputs, workers: int = 1
) -> Iterator[tuple[Episode, float]]:
    """Run the jobs' episodes on up to `workers` threads; yield (episode, seconds) in the order of `jobs`.

    Episodes share nothing mutable (each has its own Generators and online model and reads `inputs`
    only), and numpy releases the GIL in its heavy loops, so two threads use two cores and every episode
    equals its serial run exactly. Jobs running at the same time must not share a policy object (nor an
    OPE target that is also running); `seconds` is each episode's own wall time.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")

    def run(job: EpisodeJob) -> tuple[Episode, float]:
        spec, policy, targets = job
        started = time.perf_counter()
        episode = run_episode(spec=spec, policy=policy, inputs=inputs, targets=targets)
        return episode, time.perf_counter() - started

    if workers == 1:
        yield from (run(job) for job in jobs)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(run, jobs)


def target_propensities_function(spec: SimulatedPolicy, policy: Policy | None) -> TargetPropensities:
    """Per-slot propensities with which `policy` would serve logged slates in the logger's context.

    The target sees the prior (static or linear targets) or the logger's online mean (online targets) and
    no state of its own (exact for stateless targets; for stateful ones it is their initial state).
    """
    if policy is None:
        raise ValueError("the oracle is not an OPE target")

    def propensities(
        prior: np.ndarray, mean: np.ndarray, excluded: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        scores = mean if spec.online and not spec.learns_linear_model else prior
        return np.stack(
            [
                policy.slate_propensities(scores=scores[row], excluded=excluded[row], items=items[row])
                for row in range(items.shape[0])
            ]
        )

    return propensities
