"""Typed configuration of the interactive simulator (docs/design.md §6); plain dataclasses, light imports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CalibrationTarget:
    """Targets that fix the click model's a and b: mean p over all (user, item), mean of a user's true top 10.

    The top 10 is taken among the items a policy may serve at the first visit (not in the visible history).
    """

    name: str = "main"
    mean_click_probability: float = 0.02
    top10_click_probability: float = 0.35


def _default_calibrations() -> list[CalibrationTarget]:
    """docs/design.md §6's calibration and a harsher second one (sparser clicks, flatter top)."""
    return [CalibrationTarget("main", 0.02, 0.35), CalibrationTarget("sparse", 0.01, 0.25)]


def _default_policy_rates() -> dict[str, list[float]]:
    """Exploring policies (explorec.policies names) and their rates, chosen on the tune pool.

    Chosen with `explorec simulate simulate.pool=tune` and the two-tower recommender; why each rate, with
    the figures: docs/results.md ("Simulator"). An empty list (`simulate.policy_rates.mmr=[]`) drops a policy.
    """
    return {
        "epsilon_greedy": [0.1, 0.3],  # 0.3 is the OPE logging policy
        "boltzmann": [0.1],
        "linucb": [0.5, 1.0],
        "thompson": [0.25],
        "semantic_cluster": [0.1, 0.5],  # a low rate and the discovery end of its trade-off
        "mmr": [0.5],
        # the rate with the most discovery at a click CI > 0, and the highest rate
        "linucb_novelty": [0.7, 1.0],
        # after Wang et al. (RecSys 2024); the rates mirror semantic_cluster's (same knob: the share of
        # exploring slots), not chosen on a pool
        "interest_transition": [0.1, 0.5],
    }


@dataclass
class SimulateConfig:
    """Everything the simulator needs besides the data, the recommender and the text embeddings.

    Fields:
    - seed: root of every random stream (pools, holdout, frozen noise, clicks, policies).
    - min_rating: a rating ≥ min_rating is a positive. min_user_positives: users eligible for the pools.
    - tune_users / test_users: sizes of the two disjoint simulated pools; pool: which one this run serves.
    - visible_share: earliest share of a simulated user's positives that the recommender may see.
    - n_visits (T), slate_size (K), n_replications (R).
    - ground_truth: "ease", "ials" (implicit ALS, a factor model) or "ease_popularity_dampened" (robustness;
      z − popularity_damping · z_pop); `explorec.simulation.ground_truth.fit_ground_truth`.
    - ease_l2_grid / ials_l2_grid: λ candidates of EASE (both EASE kinds) and of iALS; ease_holdout_share:
      the share of positives of users outside the test pool held out to choose λ (every kind).
    - ials_factors / ials_alpha / ials_iterations: the iALS ground truth's rank, confidence weight, sweeps.
    - noise_std: std of the frozen per-(user, item) noise ε. calibrations: one world per target.
    - prior_popularity: the calibrated prior also takes log(1 + training popularity) of the item as a
      feature (fitted on the same tune-pool exposure log), correcting a recommender's popularity bias.
    - online_noise_std σ and online_prior_std τ: click-noise and weight-prior scales of the per-user residual
      Bayesian linear model (prior precision σ²/τ² in the model's units).
    - linear_exploration_scale: linucb's bonus / thompson's posterior scale at exploration_rate 1 (the
      policies' knob lies in [0, 1]); rate·scale/online_noise_std is the multiple of the model's own
      posterior width (chosen with `explorec simulate simulate.pool=tune`; see docs/results.md).
    - novelty_bonus_scale: linucb_novelty's weight λ at exploration_rate 1 (the value of a click in a cluster
      the user has not engaged with, in clicks, is 1 + λ·ν; see `explorec.policies.novelty`).
    - policy_rates: exploring policy name → exploration rates; baselines oracle, static, greedy_online and
      random always run. n_candidates: top-M candidates of linucb/thompson/mmr.
    - n_text_clusters / cluster_seed: k-means clusters of the text embeddings (discovery, semantic policy).
    - ope_logging_policy / ope_target_policies: labels ("name@rate" or a baseline name) of the run whose
      served slates are logged with propensities, and of the policies whose value is estimated from them
      ("" switches logging and the OPE check off).
    - recommender: "two_tower" (the towers, fitted on the leak-free restricted data set; the default) or
      "pure_svd" (the fast truncated-SVD stand-in, for tests). stand_in_dimension: the stand-in's rank.
    - recommender_max_epochs: the simulator's own epoch budget for the two-tower fit (the model and the
      rest of the trainer come from `model` / `trainer`). recommender_cache_dir: where restricted fits are
      cached, keyed by data fingerprint, pools/visible split, model and trainer config and encoder.
    - world: "static" (a fixed catalogue) or "churn" (new items arrive during the horizon; see
      `explorec.simulation.churn`). churn_share: share of the items with text withheld from the towers'
      training and from the simulated users' visible histories (the ground truth knows them).
      churn_initial_share: share of the withheld items that enter at visit 0; the rest arrive evenly over
      visits 1 .. T − 1 (a trickle per visit), in a seeded order.
    - blas_threads: BLAS threads inside the runner (threadpoolctl). episode_workers: threads that run the
      policies' independent episodes of one replication at the same time (results equal serial runs).
    """

    seed: int = 0
    min_rating: float = 4.0
    min_user_positives: int = 20
    tune_users: int = 150
    test_users: int = 300
    pool: str = "test"  # tune (Optuna / choosing policies) or test (reported numbers)
    visible_share: float = 0.5
    n_visits: int = 20
    slate_size: int = 10
    n_replications: int = 5
    ground_truth: str = "ease"  # or ials, ease_popularity_dampened (robustness)
    popularity_damping: float = 0.5
    ease_l2_grid: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0])
    ease_holdout_share: float = 0.1
    ials_l2_grid: list[float] = field(default_factory=lambda: [1.0, 10.0, 30.0, 100.0, 300.0])
    ials_factors: int = 32
    ials_alpha: float = 1.0
    ials_iterations: int = 15
    noise_std: float = 0.5
    calibrations: list[CalibrationTarget] = field(default_factory=_default_calibrations)
    # true: the prior is σ(α·s + γ·log(1 + popularity) + β), fitted on the same tune-pool exposure log. Off
    # by default; its effect: `explorec simulate simulate.pool=tune simulate.prior_popularity=true`,
    # docs/results.md.
    prior_popularity: bool = False
    online_noise_std: float = 0.2
    online_prior_std: float = 0.02
    linear_exploration_scale: float = 1.6
    novelty_bonus_scale: float = 0.5
    policy_rates: dict[str, list[float]] = field(default_factory=_default_policy_rates)
    n_candidates: int = 100
    n_text_clusters: int = 20
    cluster_seed: int = 0
    ope_logging_policy: str = "epsilon_greedy@0.3"
    ope_target_policies: list[str] = field(default_factory=lambda: ["epsilon_greedy@0.1", "greedy_online"])
    # two_tower: the towers (encoder from `encoder`), fitted on every non-simulated user plus the visible part
    # of the simulated users only (asserted); pure_svd: the fast truncated-SVD stand-in (tests).
    recommender: str = "two_tower"
    stand_in_dimension: int = 32
    # The simulator's own epoch budget (epochs) for its restricted two-tower fit (the full run uses
    # trainer.max_epochs); the fit is cached on disk, so only the first run pays for it. Accuracy and time
    # against a larger budget: `explorec simulate simulate.recommender_max_epochs=30`, see docs/results.md.
    recommender_max_epochs: int = 10
    recommender_cache_dir: str = "mlruns/simulator_recommenders"
    world: str = "static"  # or churn
    churn_share: float = 0.1
    churn_initial_share: float = 0.3
    blas_threads: int = 1  # BLAS threads per episode thread (episode_workers x blas_threads = cores used)
    episode_workers: int = 2  # policies' episodes of a replication run on this many threads (equal to serial)


RECOMMENDERS = ("two_tower", "pure_svd")
WORLDS = ("static", "churn")


def _default_study_policies() -> list[str]:
    """Every exploring policy of explorec.policies."""
    return [
        "epsilon_greedy",
        "boltzmann",
        "linucb",
        "thompson",
        "semantic_cluster",
        "mmr",
        "linucb_novelty",
        "interest_transition",
    ]


GROUND_TRUTHS = ("ease", "ials", "ease_popularity_dampened")


@dataclass
class StudyConfig:
    """`explorec study`: encoder ladder × policy × rate × world × ground truth through the simulator.

    Fields:
    - encoders: the ladder of item-tower encoders, smallest first (e.g. none, minilm, mpnet); each rung is
      compared with the one below it (adjacent pairs, upper − lower). The text clusters (discovery metric,
      semantic_cluster, mmr, interest_transition, ILD) always come from the default text encoder's
      embeddings, so every rung is measured on the same clusters.
    - worlds: simulated worlds ("static", "churn"); every rung is fitted once per world (the churn world
      withholds its new items from the towers).
    - ground_truths: the click worlds' ground truths (ease, ials, ease_popularity_dampened); the towers are
      shared across them. A claim stands only where all of them agree.
    - policies / exploration_rates: the grid (every policy at every rate); the baselines always run.
    - calibrations: names among simulate.calibrations to run ([] = all of them).
    - n_replications: R of the study's simulations (replaces simulate.n_replications).
    - pool: the user pool the study reports on (the grid is fixed in advance, nothing is tuned on it).
    - selection_pool: the pool on which the churn-world goal's "best language-model-aware policy" is chosen
      (largest expected clicks, first ground truth, first calibration); "" = no goal check. It must differ
      from `pool`, so nothing is chosen on the pool the study reports on.
    - deviation_levels: slot deviation rates δ (share of slots differing from greedy) at which the encoders
      are compared at equal cost; keep them inside the range the grid reaches (see docs/results.md).
    - early_cost_levels: relative losses of early-visit CTR vs the same encoder's greedy_online
      (0.05 = 5% fewer expected clicks per slot in the first quarter of visits) for the same comparison.
    """

    encoders: list[str] = field(default_factory=lambda: ["none", "minilm"])
    worlds: list[str] = field(default_factory=lambda: ["static", "churn"])
    ground_truths: list[str] = field(default_factory=lambda: list(GROUND_TRUTHS))
    policies: list[str] = field(default_factory=_default_study_policies)
    exploration_rates: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.6])
    calibrations: list[str] = field(default_factory=lambda: ["main"])
    n_replications: int = 5
    pool: str = "test"
    selection_pool: str = "tune"
    deviation_levels: list[float] = field(default_factory=lambda: [0.4, 0.6, 0.8])
    early_cost_levels: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1])
