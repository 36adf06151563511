"""The loop's simulated traffic and its judgement: users with a click model, rounds served through the
service's own code, a candidate's simulated on-policy value, and the per-round report (`explorec loop`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from explorec.errors import ExplorecError
from explorec.evaluation.ope import ESTIMATOR_NAMES

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig
    from explorec.data.processed import ProcessedDataset
    from explorec.serving.recommender import Recommender
    from explorec.serving.service import RecommendationService

LOOP_STREAM = 41
"""Random stream of the loop's requests and clicks (distinct from the simulator's streams)."""
ITEM_COLUMNS = ["item_id", "title", "year", "genres", "text"]


class LoopError(ExplorecError):
    """The loop cannot run with this configuration (e.g. no champion after the first round)."""


@dataclass(frozen=True)
class LoopWorld:
    """The simulated users the loop serves: ids as the service knows them, click probabilities, clusters."""

    users: tuple[str, ...]
    probabilities: np.ndarray
    """p(u, i) of each traffic user (rows in `users` order) for every item of the world."""
    item_rows: dict[str, int]
    clusters: np.ndarray
    """Text cluster of every item of the world (discovery: clicks in clusters the user had not engaged)."""
    engaged: tuple[frozenset[int], ...]
    """Clusters of each traffic user's visible history."""
    position_weights: np.ndarray

    def expected_clicks(self, user: int, item_ids: Sequence[str]) -> np.ndarray:
        """θ_k·p(u, i) of each slot of a slate shown to traffic user number `user`."""
        try:
            rows = [self.item_rows[item] for item in item_ids]
        except KeyError as missing:
            raise LoopError(f"item {missing} is served but unknown to the simulated world") from None
        return self.position_weights[: len(rows)] * self.probabilities[user, rows]


def loop_world(dataset: ProcessedDataset, cfg: ExplorecConfig) -> tuple[LoopWorld, Any]:
    """The traffic users of `cfg.loop.pool`, their click model and clusters; also the simulation world."""
    from explorec.policies.semantic import text_clusters
    from explorec.simulation.environment import position_weights
    from explorec.simulation.ground_truth import stream
    from explorec.simulation.simulate import world_from_dataset
    from explorec.simulation.tracked import cluster_text_embeddings

    settings = cfg.loop
    world = world_from_dataset(dataset, cfg.simulate)
    pool = world.pools.get(settings.pool)
    if settings.users is not None and settings.users < pool.size:
        pool = np.sort(stream(cfg.simulate.seed, LOOP_STREAM).choice(pool, settings.users, replace=False))
    models = {model.name: model for model in world.click_models}
    if settings.calibration not in models:
        raise LoopError(f"loop.calibration={settings.calibration!r} is not one of {sorted(models)}")
    clusters = text_clusters(
        text_embeddings=cluster_text_embeddings(dataset, cfg),
        n_clusters=cfg.simulate.n_text_clusters,
        seed=cfg.simulate.cluster_seed,
    )
    user_ids = dataset.users.set_index("user_idx")["user_id"].astype(str)
    item_ids = dataset.items.set_index("item_idx")["item_id"].astype(str)
    engaged = tuple(frozenset(clusters[items].tolist()) for items in world.visible_items(pool))
    traffic = LoopWorld(
        users=tuple(user_ids.loc[pool].tolist()),
        probabilities=world.click_probabilities(pool, models[settings.calibration]),
        item_rows={item: int(row) for row, item in item_ids.items()},
        clusters=clusters,
        engaged=engaged,
        position_weights=position_weights(settings.slate_size),
    )
    return traffic, world


def base_training_data(dataset: ProcessedDataset, world: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) the first champion trains on: nothing of a simulated user after the cut-off."""
    from explorec.simulation.ground_truth import restrict_dataset

    restricted = restrict_dataset(dataset, visible=world.visible, hidden=world.hidden)
    frame = pd.concat([restricted.train, restricted.valid, restricted.test], ignore_index=True)
    user_ids = dataset.users.set_index("user_idx")["user_id"].astype(str)
    item_ids = dataset.items.set_index("item_idx")["item_id"].astype(str)
    interactions = pd.DataFrame(
        {
            "user_id": user_ids.loc[frame["user_idx"]].to_numpy(),
            "item_id": item_ids.loc[frame["item_idx"]].to_numpy(),
            "rating": frame["rating"].to_numpy(),
            "timestamp": frame["timestamp"].to_numpy(np.int64),
        }
    )
    items = dataset.items.reindex(columns=[*ITEM_COLUMNS[:-1], "overview"]).rename(
        columns={"overview": "text"}
    )
    return interactions, items  # the files source composes the encoder text from these as the source did


@dataclass
class RoundTraffic:
    """What one round of traffic served and what the simulated users did."""

    n_users: int = 0
    n_slates: int = 0
    n_slots: int = 0
    n_explored: int = 0
    clicks: int = 0
    expected_clicks: float = 0.0
    new_cluster_clicks: int = 0
    engaged: list[set[int]] = field(default_factory=list, repr=False)

    def metrics(self) -> dict[str, float]:
        """Per-user and per-slot figures of the round."""
        users, slots = max(self.n_users, 1), max(self.n_slots, 1)
        return {
            "traffic/slates": float(self.n_slates),
            "traffic/clicks_per_user": self.clicks / users,
            "traffic/expected_clicks_per_user": self.expected_clicks / users,
            "traffic/ctr": self.clicks / slots,
            "traffic/explored_share": self.n_explored / slots,
            "traffic/new_clusters_per_user": self.new_cluster_clicks / users,
        }


def serve_round(
    service: RecommendationService,
    world: LoopWorld,
    *,
    round_index: int,
    visits: int,
    seed: int,
    engaged: list[set[int]],
) -> RoundTraffic:
    """Serve `visits` visits of every traffic user; clicks from the click model go back as feedback.

    `engaged` (per traffic user, the clusters clicked or in the visible history so far) is updated in place.
    """
    from explorec.serving.service import FeedbackBody, RecommendBody
    from explorec.simulation.ground_truth import stream

    traffic = RoundTraffic(n_users=len(world.users), engaged=engaged)
    k = int(world.position_weights.size)
    for number, user in enumerate(world.users):
        rng = stream(seed, LOOP_STREAM, round_index, number)
        shown: list[str] = []
        clicked: list[str] = []
        for _ in range(visits):
            answer = service.recommend(
                RecommendBody(
                    user_id=user,
                    k=k,
                    seed=int(rng.integers(2**31)),
                    shown_item_ids=shown or None,
                    clicked_item_ids=clicked or None,
                )
            )
            items = [str(slot["item_id"]) for slot in answer["items"]]
            expected = world.expected_clicks(number, items)
            hits = rng.random(len(items)) < expected
            chosen = [item for item, hit in zip(items, hits, strict=True) if hit]
            service.feedback(
                FeedbackBody(
                    impression_id=answer["impression_id"],
                    clicked_item_ids=chosen,
                    skipped_item_ids=[item for item, hit in zip(items, hits, strict=True) if not hit],
                )
            )
            for item in chosen:
                cluster = int(world.clusters[world.item_rows[item]])
                if cluster not in engaged[number]:
                    engaged[number].add(cluster)
                    traffic.new_cluster_clicks += 1
            traffic.n_slates += 1
            traffic.n_slots += len(items)
            traffic.n_explored += sum(bool(slot["explored"]) for slot in answer["items"])
            traffic.clicks += len(chosen)
            traffic.expected_clicks += float(expected.sum())
            shown.extend(items)
            clicked.extend(chosen)
    return traffic


def simulated_value(
    candidate: Recommender,
    log: Any,
    value_of: Callable[[str, Sequence[str]], np.ndarray],
    *,
    draws: int,
    seed: int,
) -> float:
    """The candidate's expected clicks per slot on the logged requests: its own slates, sampled `draws` times.

    The estimand of the off-policy evaluation (`serving.log_evaluation`) computed from the simulated truth.
    """
    from explorec.serving.log_evaluation import logged_batches

    rng = np.random.default_rng(seed)
    total, slots = 0.0, 0
    for batch in logged_batches(log):
        for _ in range(draws):
            requests = [dataclasses.replace(r, seed=int(rng.integers(2**31))) for r in batch.requests]
            for request, answer in zip(requests, candidate.recommend(requests), strict=True):
                values = value_of(str(request.user_id), answer.item_ids)
                total += float(values.sum())
                slots += len(values)
    if slots == 0:
        raise LoopError("the round's log holds no slate to compute the candidate's value on")
    return total / slots


@dataclass(frozen=True)
class Judgement:
    """A candidate judged on one round's traffic: its off-policy estimates, its simulated value, the gates."""

    version: str
    training_run_id: str
    estimates: dict[str, tuple[float, float, float]]
    """estimator → (estimate, 95% low, 95% high) of clicks per slot."""
    truth: float
    lift: tuple[float, float, float]
    effective_sample_size: float
    gate_passed: bool
    gate_reasons: list[str]
    promoted: bool

    def covered(self) -> dict[str, bool]:
        """Whether each estimator's interval contains the simulated value."""
        return {name: low <= self.truth <= high for name, (_, low, high) in self.estimates.items()}

    def metrics(self) -> dict[str, float]:
        """Flat figures for the loop's run."""
        values = {
            "candidate/version": float(self.version),
            "candidate/simulated_value": self.truth,
            "candidate/ope_lift": self.lift[0],
            "candidate/ope_lift_ci_low": self.lift[1],
            "candidate/ope_lift_ci_high": self.lift[2],
            "candidate/effective_sample_size": self.effective_sample_size,
            "candidate/gate_passed": float(self.gate_passed),
            "candidate/promoted": float(self.promoted),
        }
        for name, (estimate, low, high) in self.estimates.items():
            values[f"candidate/{name}"] = estimate
            values[f"candidate/{name}_ci_low"] = low
            values[f"candidate/{name}_ci_high"] = high
            values[f"candidate/{name}_covered"] = float(low <= self.truth <= high)
        return values


def judgement_from(
    ope: dict[str, float],
    *,
    version: str,
    run_id: str,
    truth: float,
    gate_passed: bool,
    gate_reasons: list[str],
    promoted: bool,
) -> Judgement:
    """A Judgement from registration's `ope/*` metrics (LoopError when the log was not evaluated)."""
    if not ope:
        raise LoopError(
            f"v{version} was not evaluated on the round's logged traffic; see its `ope.status` tag"
        )
    estimates = {
        name: (ope[f"ope/{name}"], ope[f"ope/{name}_ci_low"], ope[f"ope/{name}_ci_high"])
        for name in ESTIMATOR_NAMES
        if f"ope/{name}" in ope
    }
    return Judgement(
        version=version,
        training_run_id=run_id,
        estimates=estimates,
        truth=truth,
        lift=(ope["ope/lift"], ope["ope/lift_ci_low"], ope["ope/lift_ci_high"]),
        effective_sample_size=ope["ope/effective_sample_size"],
        gate_passed=gate_passed,
        gate_reasons=gate_reasons,
        promoted=promoted,
    )


@dataclass(frozen=True)
class LoopRound:
    """One round: the champion that served, its traffic, and the candidate judged on it (none in round 1)."""

    round: int
    champion: str
    traffic: dict[str, float]
    judgement: Judgement | None
    next_candidate_run_id: str | None

    def metrics(self) -> dict[str, float]:
        """Everything of the round as flat metrics (one MLflow step per round)."""
        values = {"champion/version": float(self.champion), **self.traffic}
        if self.judgement is not None:
            values.update(self.judgement.metrics())
        return values


def rounds_frame(rounds: Sequence[LoopRound]) -> pd.DataFrame:
    """One row per round, every metric a column."""
    return pd.DataFrame([{"round": r.round, **r.metrics()} for r in rounds])


def coverage(rounds: Sequence[LoopRound]) -> dict[str, tuple[int, int]]:
    """estimator → (intervals that covered the simulated value, candidates judged)."""
    judged = [r.judgement for r in rounds if r.judgement is not None]
    counts: dict[str, tuple[int, int]] = {}
    for judgement in judged:
        for name, hit in judgement.covered().items():
            covered, total = counts.get(name, (0, 0))
            counts[name] = (covered + int(hit), total + 1)
    return counts


def loop_markdown(rounds: Sequence[LoopRound], *, settings: dict[str, Any]) -> str:
    """The loop's report: one row per round, then the coverage of the off-policy intervals."""
    lines = [
        "# explorec loop",
        "",
        f"Settings: `{json.dumps(settings)}`",
        "",
        "| round | champion | clicks/user | expected clicks/user | new clusters/user | explored share | "
        "candidate | SNIPS [95%] (the lift's) | simulated value | lift lower bound | gate | promoted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        t, j = r.traffic, r.judgement
        judged = "| — | — | — | — | — | — |"
        if j is not None:
            snips = j.estimates.get("pbm_snips", j.estimates.get("prefix_snips", (float("nan"),) * 3))
            judged = (
                f"| v{j.version} | {snips[0]:.4f} [{snips[1]:.4f}, {snips[2]:.4f}] | {j.truth:.4f} | "
                f"{j.lift[1]:+.4f} | {'passed' if j.gate_passed else 'failed'} | "
                f"{'yes' if j.promoted else 'no'} |"
            )
        lines.append(
            f"| {r.round} | v{r.champion} | {t['traffic/clicks_per_user']:.3f} | "
            f"{t['traffic/expected_clicks_per_user']:.3f} | {t['traffic/new_clusters_per_user']:.3f} | "
            f"{t['traffic/explored_share']:.3f} " + judged
        )
    counts = coverage(rounds)
    if counts:
        lines += ["", "Off-policy intervals (95%) that contain the candidate's simulated value:"]
        lines += [f"- {name.upper()}: {hit} of {total}" for name, (hit, total) in counts.items()]
    return "\n".join(lines)


def loop_curves_figure(frame: pd.DataFrame) -> Any:
    """Per round: clicks and discovery of the served traffic, and each candidate's estimate vs its truth."""
    from explorec.tracking.plots import pyplot

    plt = pyplot()
    figure, (traffic_axis, ope_axis) = plt.subplots(1, 2, figsize=(11, 4))
    traffic_axis.plot(
        frame["round"], frame["traffic/expected_clicks_per_user"], "o-", label="expected clicks"
    )
    traffic_axis.plot(frame["round"], frame["traffic/clicks_per_user"], "s--", label="clicks")
    traffic_axis.plot(frame["round"], frame["traffic/new_clusters_per_user"], "^-", label="new clusters")
    changed = frame["champion/version"].ne(frame["champion/version"].shift())
    for _, row in frame[changed].iterrows():  # the champion's version where it changes
        traffic_axis.annotate(
            f"v{int(row['champion/version'])}", (row["round"], row["traffic/clicks_per_user"])
        )
    traffic_axis.set(xlabel="round", ylabel="per user and round", title="served traffic (champion annotated)")
    traffic_axis.legend()
    title = "candidate: off-policy estimate vs truth"
    judged = (
        frame.dropna(subset=["candidate/simulated_value"]) if "candidate/simulated_value" in frame else None
    )
    if judged is not None and len(judged):
        for offset, name in zip(np.linspace(-0.25, 0.25, len(ESTIMATOR_NAMES)), ESTIMATOR_NAMES, strict=True):
            if f"candidate/{name}" not in judged:
                continue
            low = judged[f"candidate/{name}"] - judged[f"candidate/{name}_ci_low"]
            high = judged[f"candidate/{name}_ci_high"] - judged[f"candidate/{name}"]
            ope_axis.errorbar(
                judged["round"] + offset,
                judged[f"candidate/{name}"],
                yerr=[low, high],
                fmt="o",
                ms=3,
                label=name,
            )
        truth = judged["candidate/simulated_value"]
        ope_axis.plot(judged["round"], truth, "k*", ms=9, label="simulated")
        ceiling = 3 * float(truth.max())
        ope_axis.set_ylim(-0.5 * float(truth.max()), ceiling)  # a few ESS≈1 intervals would hide the rest
        title += f"\n(axis cut at 3× the largest truth, {ceiling:.3f})"
        ope_axis.legend(fontsize="small", ncol=2)
    ope_axis.set(xlabel="round", ylabel="clicks per slot", title=title)
    return figure
