"""Recommendations for serving requests from a `RecommenderBundle`: history, scores, policy, slate.

One request is (user_id and/or recent_item_ids, k, optional exploration_rate and seed, optional feedback).
How the history is chosen:
- recent_item_ids given: ids not in the catalogue are ignored and counted (`n_unknown_items`); a known user's
  stored history comes first, the recent items after it (`history_source` 'user+request', or 'request').
- no usable recent items and a known user_id: the user's stored history (`history_source` 'user').
- neither (a new user with no history): **cold start** — items scored by train popularity
  (log(1 + count) / log(1 + max count)), served through the same exploration policy, so a new user gets
  popular items with the policy's share of exploration (`cold_start` True, `history_source` 'none').
  A model trained with user-ID embeddings also answers unknown users this way.
Otherwise the user tower encodes the last `history_length` items of the history into a vector (a known
user's stored-history vector is computed once — for every known user at load time by `precompute_known_users`,
or on first use — then reused); scores are its cosine with every item
vector. History items are never recommended. The policy chooses k items and logs per slot its propensity and
whether it explored (see `explorec.policies.base`).

Feedback: the server keeps no per-user state, so a client that wants the policy to learn within a session
sends what it was shown so far (`shown_item_ids`, oldest first) and which of those were clicked
(`clicked_item_ids`). Shown items are never recommended again; the policy's per-user state starts from the
history and takes the policy's own `update` per shown item (reward 1 if clicked, else 0): LinUCB,
Thompson and linucb_novelty update their posterior of the residual, semantic_cluster its cluster counts;
the other policies only exclude the shown items. Policies that model rewards (`Policy.reward_scale_scores`)
get the bundle's calibrated scores, σ(slope·score + intercept) ≈ the probability of a next interaction,
so that a click or a skip is measured against what the model expected; the answer still reports the raw
scores. Without a calibration (older bundles, or one whose fit found no positive slope) and for cold start
they get the raw scores.
"""

from __future__ import annotations

import difflib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.policies.base import Policy, allowed_scores, top_k_indices
from explorec.policies.slates import floor_exposure, policy_exposure, with_exploration_floor
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import (
    RecommenderBundle,
    ScoreCalibration,
    build_user_tower,
)

if TYPE_CHECKING:
    pass

DEFAULT_K = 10
SHOWN_CHARACTERS = 60
"""A value quoted in an error message is cut to this many characters (a request may carry megabytes)."""
REQUEST_FIELDS = (
    "user_id",
    "recent_item_ids",
    "k",
    "exploration_rate",
    "seed",
    "shown_item_ids",
    "clicked_item_ids",
)
POLICY_CACHE_SIZE = 16


class RequestError(ValueError):
    """A malformed or oversized recommendation request (the caller's fault: a 4xx when served)."""


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one call cheap: slate size, requests per call, ids per list, characters per id."""

    max_k: int = 100
    max_requests: int = 1000
    max_history_items: int = 1000
    max_id_length: int = 256


@dataclass(frozen=True)
class Request:
    """One validated request."""

    user_id: str | None
    recent_item_ids: tuple[str, ...] | None
    k: int
    exploration_rate: float | None
    seed: int | None
    shown_item_ids: tuple[str, ...] = ()
    clicked_item_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecisionContext:
    """What the policy sees for one request: scores (raw and as served from), exclusions and its state."""

    policy: Policy
    values: np.ndarray
    served_from: np.ndarray
    excluded: np.ndarray
    state: Any
    cold_start: bool
    n_unknown_shown: int
    n_shown: int


@dataclass(frozen=True)
class RequestView:
    """How one request is served: the policy's context over the items it may choose among, and their ids."""

    context: DecisionContext
    items: np.ndarray | None
    """The catalogue row of each of the context's positions (retrieved candidates); None: every item."""
    source: str
    n_unknown: int

    def positions(self, rows: Sequence[int | None]) -> list[int | None]:
        """Each catalogue row's position in this view (None: an unknown item, or one not among its items)."""
        if self.items is None:
            return list(rows)
        where = {int(item): position for position, item in enumerate(self.items)}
        return [None if row is None else where.get(row) for row in rows]

    def catalogue_rows(self, positions: np.ndarray) -> list[int]:
        """The catalogue rows of positions in this view."""
        rows = positions if self.items is None else self.items[positions]
        return [int(row) for row in rows]


@dataclass(frozen=True)
class LoggedDecision:
    """A recommender's view of one logged slate: its per-slot propensities and reward predictions."""

    propensities: np.ndarray
    logged_predictions: np.ndarray | None
    own_predictions: np.ndarray | None


@dataclass(frozen=True)
class LoggedExposure:
    """A recommender's exposure of one logged slate's items, and of its predictions over the catalogue."""

    of_logged: np.ndarray
    """e(a) = Σ_s θ_s·P(a in slot s) of each logged item (0 for an item it does not know)."""
    expected_prediction: float | None
    """Σ_a e(a)·q(a) with q its calibrated predictions (None without a calibration)."""


@dataclass(frozen=True)
class Recommendation:
    """The answer to one request: the slate by slot and how it was made."""

    user_id: str | None
    item_ids: list[str]
    titles: list[str]
    scores: list[float]
    propensities: list[float]
    explored: list[bool]
    n_unknown_items: int
    history_source: str
    cold_start: bool
    n_feedback: int = 0


def _is_absent(value: Any) -> bool:
    """Whether a request field is unset (None or a float NaN, as pandas writes missing cells)."""
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _shown(value: Any) -> str:
    """Return `repr(value)` cut to SHOWN_CHARACTERS, so an error never echoes a huge request back."""
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}... ({len(text)} characters)"


def _closest_field(name: str) -> str | None:
    """Return the request field a misspelled `name` most likely meant, or None."""
    if len(name) > SHOWN_CHARACTERS:
        return None  # not a misspelling, and comparing a huge name would be slow
    close = difflib.get_close_matches(name, REQUEST_FIELDS, n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(names: Sequence[str]) -> str:
    """Return ` (did you mean 'x'?)` for one misspelled name, ` (did you mean 'x' for 'y', ...?)` for more."""
    guesses = [(name, field) for name in names if (field := _closest_field(name)) is not None]
    if not guesses:
        return ""
    if len(names) == 1:
        return f" (did you mean {guesses[0][1]!r}?)"
    return " (did you mean " + ", ".join(f"{field!r} for {name!r}" for name, field in guesses) + "?)"


def unknown_field_error(names: Sequence[str]) -> RequestError:
    """Return the error for request fields that are not in REQUEST_FIELDS, suggesting the closest ones."""
    shown = [name if len(name) <= SHOWN_CHARACTERS else _shown(name) for name in names[:5]]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return RequestError(
        f"unknown request fields {shown}{more}{_did_you_mean(names[:5])}; "
        f"expected some of {list(REQUEST_FIELDS)}"
    )


def _check_id_length(name: str, item: str, limits: Limits) -> None:
    """Raise RequestError when one id is longer than `limits.max_id_length` characters."""
    if len(item) > limits.max_id_length:
        raise RequestError(f"{name} has an id of {len(item)} characters; at most {limits.max_id_length}")


def _as_int(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """Return `value` as an int within bounds, or raise RequestError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | np.floating):
        raise RequestError(f"{name} must be an integer, got {_shown(value)}")
    if not math.isfinite(float(value)) or float(value) != int(value):
        raise RequestError(f"{name} must be an integer, got {_shown(value)}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise RequestError(f"{name} must be >= {minimum}{upper}, got {number}")
    return number


def _as_rate(value: Any) -> float | None:
    """Return an exploration_rate in [0, 1] (None when unset), or raise RequestError."""
    if _is_absent(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise RequestError(f"exploration_rate must be a number in [0, 1], got {_shown(value)}")
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise RequestError(f"exploration_rate must lie in [0, 1], got {rate}")
    return rate


def _as_item_ids(value: Any, limits: Limits, name: str = "recent_item_ids") -> tuple[str, ...] | None:
    """Return a list field of item ids as strings (None when unset), or raise RequestError naming it."""
    if _is_absent(value):
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise RequestError(f"{name} must be a list of item ids, got {_shown(value)}")
    if len(value) > limits.max_history_items:
        raise RequestError(f"{name} has {len(value)} items; at most {limits.max_history_items}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | np.integer):
            raise RequestError(f"{name} must hold string or integer ids, got {_shown(item)}")
    ids = tuple(str(item) for item in value)
    for item in ids:
        _check_id_length(name, item, limits)
    return ids


def _as_feedback(fields: dict[str, Any], limits: Limits) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (shown item ids, clicked item ids); every clicked id must also be a shown one."""
    shown = _as_item_ids(fields.get("shown_item_ids"), limits, "shown_item_ids") or ()
    clicked = _as_item_ids(fields.get("clicked_item_ids"), limits, "clicked_item_ids") or ()
    not_shown = sorted(set(clicked) - set(shown))
    if not_shown:
        raise RequestError(f"clicked_item_ids must also be in shown_item_ids; not shown: {not_shown}")
    return shown, clicked


def _as_user_id(value: Any, limits: Limits) -> str | None:
    """Return a user id as a string (None when unset), or raise RequestError.

    A whole float is read as an integer id: pandas turns an integer column with a missing cell into floats.
    """
    if _is_absent(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int | np.integer):
        raise RequestError(f"user_id must be a string, got {_shown(value)}")
    user_id = str(value)
    if len(user_id) > limits.max_id_length:
        raise RequestError(f"user_id has {len(user_id)} characters; at most {limits.max_id_length}")
    return user_id


def parse_request(fields: dict[str, Any], limits: Limits) -> Request:
    """Validate one request's fields (absent fields take their defaults; at least one must be set)."""
    unknown = sorted(str(name) for name in set(fields) - set(REQUEST_FIELDS))
    if unknown:
        raise unknown_field_error(unknown)
    if all(_is_absent(value) for value in fields.values()):
        raise RequestError(
            f"empty request: set at least one of {list(REQUEST_FIELDS)} "
            "(a new user without history may send just k)"
        )
    k = fields.get("k")
    shown, clicked = _as_feedback(fields, limits)
    return Request(
        user_id=_as_user_id(fields.get("user_id"), limits),
        recent_item_ids=_as_item_ids(fields.get("recent_item_ids"), limits),
        k=DEFAULT_K if _is_absent(k) else _as_int("k", k, minimum=1, maximum=limits.max_k),
        exploration_rate=_as_rate(fields.get("exploration_rate")),
        seed=None if _is_absent(fields.get("seed")) else _as_int("seed", fields.get("seed"), minimum=0),
        shown_item_ids=shown,
        clicked_item_ids=clicked,
    )


def parse_requests(records: Sequence[dict[str, Any]], limits: Limits) -> list[Request]:
    """Validate a batch of requests; the error names the offending row (and field)."""
    if not records:
        raise RequestError("no requests: send at least one record")
    if len(records) > limits.max_requests:
        raise RequestError(f"{len(records)} requests in one call; at most {limits.max_requests}")
    _check_unknown_fields(records)
    requests = []
    for row, fields in enumerate(records):
        try:
            requests.append(parse_request(fields, limits))
        except RequestError as error:
            raise RequestError(f"request {row}: {error}") from None
    return requests


def _check_unknown_fields(records: Sequence[dict[str, Any]]) -> None:
    """Raise on a field outside REQUEST_FIELDS, naming the first row that sets it.

    A DataFrame gives every row every column (NaN where a request left it out), so the row named is the
    first whose value is set, or the first row when the field is never set.
    """
    names: dict[str, None] = {}
    for fields in records:
        names.update(dict.fromkeys(name for name in fields if name not in REQUEST_FIELDS))
    if not names:
        return
    unknown = sorted(str(name) for name in names)
    row = next(
        (index for index, fields in enumerate(records) if any(not _is_absent(fields.get(n)) for n in names)),
        0,
    )
    raise RequestError(f"request {row}: {unknown_field_error(unknown)}")


def policy_from_spec(
    spec: PolicySpec,
    *,
    item_vectors: np.ndarray,
    text_embeddings: np.ndarray | None = None,
    rate: float | None = None,
    histories: tuple[np.ndarray, np.ndarray] | None = None,
) -> Policy:
    """Build the policy a spec names; vector-based policies get the item vectors or text embeddings.

    `histories` (items, offsets: the bundle's stored histories) feed a policy that learns cluster
    transitions from them.
    """
    texts = item_vectors if text_embeddings is None else text_embeddings
    resources = spec.vector_resources(item_vectors=item_vectors, text_embeddings=texts)
    if histories is not None:
        resources.update(spec.history_resources(history_items=histories[0], history_offsets=histories[1]))
    return (spec if rate is None else replace(spec, exploration_rate=rate)).build(**resources)


def scores_for_policy(policy: Policy, scores: np.ndarray, calibration: ScoreCalibration | None) -> np.ndarray:
    """Calibrated probabilities for a policy that models rewards (`reward_scale_scores`), else `scores`."""
    if policy.reward_scale_scores and calibration is not None:
        return calibration.probabilities(scores)
    return scores


class Recommender:
    """Answers requests from a bundle: user tower for users with a history, popularity for cold start."""

    def __init__(
        self,
        bundle: RecommenderBundle,
        limits: Limits | None = None,
        *,
        exploration_floor: float = 0.0,
        exploration_floor_pool: int | None = None,
    ) -> None:
        self.bundle = bundle
        self.limits = limits or Limits()
        self.exploration_floor = exploration_floor
        """Share of slates served uniformly at random (see `with_exploration_floor`); 0 serves the policy."""
        self.exploration_floor_pool = exploration_floor_pool
        """A floor slate's items: the best this many by score (None: any allowed item)."""
        self.user_tower = build_user_tower(bundle)
        self.read_length = self.user_tower.max_history  # None: a set-style tower reads the whole history
        self.uses_user_ids = bundle.tower_config.get("n_users") is not None
        self.item_vectors = np.asarray(bundle.item_vectors, dtype=np.float32)
        self.item_index = {item: index for index, item in enumerate(bundle.item_ids)}
        self.user_index = {user: row for row, user in enumerate(bundle.user_ids)}
        popularity = np.log1p(np.asarray(bundle.item_popularity, dtype=np.float64))
        self.cold_start_scores = popularity / max(float(popularity.max()), 1e-12)
        self._policies: OrderedDict[float, Policy] = OrderedDict()
        self._stored_vectors: dict[int, np.ndarray] = {}
        self.index = bundle.item_index
        """Candidate retrieval (docs/design.md §5b); None scores every item for every request."""
        self._popularity_order: np.ndarray | None = None
        self._item_clusters: np.ndarray | None = None

    def add_items(
        self,
        item_ids: Sequence[str],
        titles: Sequence[str],
        vectors: np.ndarray,
        text_embeddings: np.ndarray | None = None,
    ) -> tuple[int, int]:
        """Add items to the catalogue (a known id gets a new vector and title); return (added, updated).

        New items have no train popularity (cold start ranks them last) and no stored history; they are
        servable by the next request. Policies are rebuilt, as they hold the item vectors.
        """
        bundle = self.bundle
        if bundle.text_embeddings is not None and text_embeddings is None:
            raise ValueError("this catalogue has text embeddings; new items need theirs too")
        known = [(row, self.item_index[item]) for row, item in enumerate(item_ids) if item in self.item_index]
        fresh = [row for row, item in enumerate(item_ids) if item not in self.item_index]
        vectors = np.asarray(vectors, dtype=np.float32)
        texts = bundle.text_embeddings
        if self.index is not None and known:  # a replaced vector gets a new index row (stale row left)
            self.index.add(vectors[[row for row, _ in known]], np.asarray([index for _, index in known]))
        if known:  # users whose history holds a replaced item read it anew: recompute on first use
            self._stored_vectors.clear()
        for row, index in known:
            self.item_vectors[index] = vectors[row]
            bundle.titles[index] = titles[row]
            if texts is not None and text_embeddings is not None:
                texts[index] = text_embeddings[row]
        if fresh:
            start = len(bundle.item_ids)
            self.item_vectors = np.concatenate([self.item_vectors, vectors[fresh]])
            bundle.item_vectors = self.item_vectors
            bundle.item_ids.extend(item_ids[row] for row in fresh)
            bundle.titles.extend(titles[row] for row in fresh)
            bundle.item_popularity = np.concatenate([bundle.item_popularity, np.zeros(len(fresh))])
            if texts is not None and text_embeddings is not None:
                bundle.text_embeddings = np.concatenate([texts, np.asarray(text_embeddings)[fresh]])
            self.item_index.update({item_ids[row]: start + offset for offset, row in enumerate(fresh)})
            self.cold_start_scores = np.concatenate([self.cold_start_scores, np.zeros(len(fresh))])
            if self.index is not None:
                self.index.add(vectors[fresh], np.arange(start, start + len(fresh)))
        self._policies.clear()
        self._popularity_order = None
        self._item_clusters = None
        return len(fresh), len(known)

    def policy(self, exploration_rate: float | None) -> Policy:
        """Return the bundle's policy at `exploration_rate` (its default when None), cached per rate."""
        spec = self.bundle.policy
        rate = spec.exploration_rate if exploration_rate is None else exploration_rate
        if rate not in self._policies:
            self._policies[rate] = policy_from_spec(
                spec,
                item_vectors=self.item_vectors,
                text_embeddings=self.bundle.text_embeddings,
                rate=rate,
                histories=(self.bundle.history_items, self.bundle.history_offsets),
            )
            while len(self._policies) > POLICY_CACHE_SIZE:
                self._policies.popitem(last=False)
        self._policies.move_to_end(rate)
        return self._policies[rate]

    def resolve_history(self, request: Request) -> tuple[np.ndarray, str, int]:
        """Return (history item indices oldest first, history source, number of unknown recent ids)."""
        row = self.user_index.get(request.user_id) if request.user_id is not None else None
        stored = self.bundle.history(row) if row is not None else np.zeros(0, dtype=np.int64)
        recent_ids = request.recent_item_ids or ()
        recent = [self.item_index[item] for item in recent_ids if item in self.item_index]
        n_unknown = len(recent_ids) - len(recent)
        if recent:
            history = np.concatenate([stored, np.asarray(recent, dtype=np.int64)])
            return history, "user+request" if stored.size else "request", n_unknown
        if stored.size:
            return stored, "user", n_unknown
        return stored, "none", n_unknown

    def user_vectors(self, histories: Sequence[np.ndarray], user_rows: Sequence[int | None]) -> np.ndarray:
        """Return user-tower vectors [n, d] for non-empty histories.

        An attention tower reads the last `history_length` items, right-aligned in a window of exactly that
        many slots after the start token, padding between, as in training and validation; a mean-pooled
        tower reads the whole history.
        """
        import torch

        if self.read_length is None:
            windows, length = list(histories), max(len(history) for history in histories)
        else:
            windows = [history[-self.read_length :] for history in histories]
            length = self.read_length  # always the full window, right-aligned, as in training
        items = np.zeros((len(windows), length), dtype=np.int64)
        padding = np.ones((len(windows), length), dtype=bool)
        for row, window in enumerate(windows):
            items[row, length - len(window) :] = window
            padding[row, length - len(window) :] = False
        vectors = torch.from_numpy(self.item_vectors[items])
        users = torch.as_tensor([row or 0 for row in user_rows]) if self.uses_user_ids else None
        with torch.inference_mode():
            return self.user_tower(vectors, torch.from_numpy(padding), users).numpy()

    def precompute_known_users(self, batch_size: int = 512) -> int:
        """Compute and keep the stored-history vector of every known user; return how many were computed."""
        rows = [row for row in range(len(self.bundle.user_ids)) if self.bundle.history(row).size]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            vectors = self.user_vectors([self.bundle.history(row) for row in batch], batch)
            self._stored_vectors.update(zip(batch, vectors, strict=True))
        return len(rows)

    def _user_vectors_of(
        self, requests: Sequence[Request]
    ) -> tuple[list[tuple[np.ndarray, str, int]], list[int], np.ndarray]:
        """(each request's resolved history, the requests served personally, their user vectors)."""
        resolved = [self.resolve_history(request) for request in requests]
        rows = [self.user_index.get(r.user_id) if r.user_id is not None else None for r in requests]
        personal = [
            index
            for index, (history, _, _) in enumerate(resolved)
            if history.size and (not self.uses_user_ids or rows[index] is not None)
        ]
        vectors = self._personal_vectors([resolved[i] for i in personal], [rows[i] for i in personal])
        return resolved, personal, vectors

    def recommend(self, requests: Sequence[Request]) -> list[Recommendation]:
        """Answer every request (one batched user-tower pass for those with a history)."""
        return [
            self._slate(request, view)
            for request, view in zip(requests, self.request_views(requests), strict=True)
        ]

    def request_views(self, requests: Sequence[Request]) -> list[RequestView]:
        """How each request is served: retrieved candidates from a large catalogue's index, else every item.

        One batched user-tower pass; `recommend` draws its slates from these views, and off-policy
        evaluation replays logged requests through them, so both see the same items and scores.
        """
        resolved, personal, vectors = self._user_vectors_of(requests)
        sizes = [self.retrieval_size(request, resolved[index][0]) for index, request in enumerate(requests)]
        retrieved = [position for position, index in enumerate(personal) if sizes[index] is not None]
        full = [position for position, index in enumerate(personal) if sizes[index] is None]
        scores = {
            personal[position]: row.astype(np.float64)
            for position, row in zip(full, vectors[full] @ self.item_vectors.T, strict=True)
        }
        candidates: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        for size in sorted({sizes[personal[position]] or 0 for position in retrieved}):
            # one search per size: an HNSW answer depends on how many are asked, so a request gets the same
            # candidates in a batch as alone
            group = [position for position in retrieved if sizes[personal[position]] == size]
            found = self.index.search(vectors[group], size) if self.index is not None else []
            for position, row in zip(group, found, strict=True):
                candidates[personal[position]] = (row, vectors[position])
        for index in range(len(requests)):
            if index not in scores and index not in candidates and sizes[index] is not None:
                candidates[index] = (self.popularity_order()[: sizes[index]], None)  # cold start
        views = []
        for index, request in enumerate(requests):
            history, source, n_unknown = resolved[index]
            view = None
            if index in candidates:
                view = self._candidate_context(request, history, *candidates[index])
                vector = candidates[index][1]
                if view is None and vector is not None:  # too few retrieved: score every item instead
                    scores[index] = (self.item_vectors @ vector).astype(np.float64)
            if view is None:
                view = (self._context(request, history, scores.get(index)), None)
            views.append(RequestView(*view, source=source, n_unknown=n_unknown))
        return views

    def retrieval_size(self, request: Request, history: np.ndarray) -> int | None:
        """Items to retrieve for a request (candidates + what it excludes); None serves the whole catalogue.

        Without an index, below its `retrieve_from` items, or when that many items are not fewer than the
        catalogue, every item is scored.
        """
        if self.index is None or self.bundle.n_items < self.index.retrieve_from:
            return None
        size = self.candidates_wanted(request.k) + int(history.size) + len(request.shown_item_ids)
        return size if size < self.bundle.n_items else None

    def candidates_wanted(self, k: int) -> int:
        """Candidates a request's policy chooses among: the index's count, the policy's own, at least k."""
        own = int(self.bundle.policy.params.get("n_candidates", 0))
        return max(self.index.n_candidates if self.index is not None else 0, own, k)

    def popularity_order(self) -> np.ndarray:
        """Every item by descending cold-start score (ties by index): cold start's candidates."""
        if self._popularity_order is None:
            self._popularity_order = np.argsort(-self.cold_start_scores, kind="stable")
        return self._popularity_order

    def item_clusters(self) -> np.ndarray:
        """The text clusters of every item, as the bundle's policy makes them over the whole catalogue."""
        if self._item_clusters is None:
            self._item_clusters = np.asarray(self.policy(None).item_clusters, dtype=np.int64)  # type: ignore[attr-defined]
        return self._item_clusters

    def candidate_policy(self, rate: float | None, items: np.ndarray) -> Policy:
        """The bundle's policy at `rate` built over the catalogue items `items` only (their local order).

        Text-cluster policies get the clusters of the whole catalogue (renumbered over `items`), so a
        candidate's cluster is the one it has in the full catalogue; a policy that learns cluster transitions
        gets the whole catalogue's transition counts between the clusters present (the proposal is
        normalised over the present clusters).
        """
        spec = self.bundle.policy
        spec = replace(spec, exploration_rate=spec.exploration_rate if rate is None else rate)
        texts = self.bundle.text_embeddings
        resources: dict[str, Any] = spec.vector_resources(
            item_vectors=self.item_vectors[items],
            text_embeddings=(self.item_vectors if texts is None else texts)[items],
        )
        if spec.policy_class.clusters_text:
            present, local = np.unique(self.item_clusters()[items], return_inverse=True)
            resources["item_clusters"] = local
            if spec.policy_class.learns_cluster_transitions:
                counts = self.policy(None).transition_counts  # type: ignore[attr-defined]
                resources["cluster_transitions"] = counts[np.ix_(present, present)]
        return spec.build(**resources)

    def _candidate_context(
        self, request: Request, history: np.ndarray, candidates: np.ndarray, vector: np.ndarray | None
    ) -> tuple[DecisionContext, np.ndarray] | None:
        """The policy's view of one request over its retrieved candidates (None: too few were retrieved).

        The local catalogue is the first candidates not excluded, then the history and shown items
        (excluded there, but the policy's state starts from them); returns it with its global item ids.
        """
        shown, clicks, n_unknown_shown = self.resolve_feedback(request)
        excluded_items = np.union1d(history, shown)
        wanted = self.candidates_wanted(request.k)
        fresh = candidates[(candidates >= 0) & ~np.isin(candidates, excluded_items)]
        fresh = fresh[np.sort(np.unique(fresh, return_index=True)[1])][:wanted]  # stale index rows: dedupe
        if fresh.size < max(request.k, wanted):
            return None
        items = np.concatenate([fresh, excluded_items]).astype(np.int64)
        local = {int(item): position for position, item in enumerate(items)}
        excluded = np.zeros(items.size, dtype=bool)
        excluded[fresh.size :] = True
        cold_start = vector is None
        if vector is None:
            values = self.cold_start_scores[items]
        else:
            values = (self.item_vectors[items] @ vector).astype(np.float64)
        policy = self.candidate_policy(request.exploration_rate, items)
        served_from = self.policy_scores(policy, values, cold_start=cold_start)
        state = policy.initial_state(history_items=np.asarray([local[int(i)] for i in history], np.int64))
        if shown.size:
            local_shown = np.asarray([local[int(item)] for item in shown], dtype=np.int64)
            policy.update(state=state, items=local_shown, rewards=clicks, scores=served_from)
        context = DecisionContext(
            policy, values, served_from, excluded, state, cold_start, n_unknown_shown, int(shown.size)
        )
        return context, items

    def _personal_vectors(
        self, resolved: Sequence[tuple[np.ndarray, str, int]], rows: Sequence[int | None]
    ) -> np.ndarray:
        """Return user vectors; a known user's stored-history vector is computed once and then reused."""
        dimension = self.item_vectors.shape[1]
        vectors = np.zeros((len(resolved), dimension), dtype=np.float32)
        missing = []
        for position, ((_, source, _), row) in enumerate(zip(resolved, rows, strict=True)):
            cached = self._stored_vectors.get(row) if source == "user" and row is not None else None
            if cached is None:
                missing.append(position)
            else:
                vectors[position] = cached
        if missing:
            fresh = self.user_vectors([resolved[i][0] for i in missing], [rows[i] for i in missing])
            for position, vector in zip(missing, fresh, strict=True):
                vectors[position] = vector
                row = rows[position]
                if resolved[position][1] == "user" and row is not None:
                    self._stored_vectors[row] = vector
        return vectors

    def policy_scores(self, policy: Policy, scores: np.ndarray, *, cold_start: bool) -> np.ndarray:
        """The scores `policy` serves from (cold start: the popularity scores as they are)."""
        return scores if cold_start else scores_for_policy(policy, scores, self.bundle.score_calibration)

    def resolve_feedback(self, request: Request) -> tuple[np.ndarray, np.ndarray, int]:
        """Return (shown item indices in order, their clicks, number of unknown shown ids)."""
        known = [item for item in request.shown_item_ids if item in self.item_index]
        clicked = set(request.clicked_item_ids)
        shown = np.asarray([self.item_index[item] for item in known], dtype=np.int64)
        clicks = np.asarray([item in clicked for item in known], dtype=np.float64)
        return shown, clicks, len(request.shown_item_ids) - len(known)

    def _context(self, request: Request, history: np.ndarray, scores: np.ndarray | None) -> DecisionContext:
        """The policy's view of one request: its scores, exclusions and state after the request's feedback."""
        cold_start = scores is None
        values = self.cold_start_scores if scores is None else scores
        shown, clicks, n_unknown_shown = self.resolve_feedback(request)
        excluded = np.zeros(self.bundle.n_items, dtype=bool)
        excluded[history] = True
        excluded[shown] = True
        policy = self.policy(request.exploration_rate)
        served_from = self.policy_scores(policy, values, cold_start=cold_start)
        state = policy.initial_state(history_items=history)
        if shown.size:
            policy.update(state=state, items=shown, rewards=clicks, scores=served_from)
        return DecisionContext(
            policy, values, served_from, excluded, state, cold_start, n_unknown_shown, int(shown.size)
        )

    def _slate(self, request: Request, view: RequestView) -> Recommendation:
        """Serve one request's slate through the policy from its view."""
        context = view.context
        available = int(context.excluded.size - context.excluded.sum())
        if request.k > available:
            raise RequestError(
                f"k={request.k} but only {available} items are left after the history and shown items"
            )
        rng = np.random.default_rng(request.seed)
        slate = context.policy.select(
            scores=context.served_from, excluded=context.excluded, k=request.k, rng=rng, state=context.state
        )
        slate = with_exploration_floor(
            context.policy,
            slate,
            scores=context.served_from,
            excluded=context.excluded,
            state=context.state,
            rng=rng,
            floor=self.exploration_floor,
            pool=self.exploration_floor_pool,
        )
        local = [int(item) for item in slate.items]
        items = view.catalogue_rows(slate.items)
        return Recommendation(
            user_id=request.user_id,
            item_ids=[self.bundle.item_ids[item] for item in items],
            titles=[self.bundle.titles[item] for item in items],
            scores=[float(context.values[item]) for item in local],
            propensities=[float(p) for p in slate.propensities],
            explored=[bool(flag) for flag in slate.explored],
            n_unknown_items=view.n_unknown + context.n_unknown_shown,
            history_source=view.source,
            cold_start=context.cold_start,
            n_feedback=context.n_shown,
        )

    def logged_decisions(
        self, views: Sequence[RequestView], slates: Sequence[Sequence[str]], rng: np.random.Generator
    ) -> list[LoggedDecision]:
        """How this recommender would have answered logged requests, for off-policy evaluation.

        `views` are the logged requests replayed through `request_views`. Per logged slate: the probability
        this policy puts each logged item in its slot after the logged earlier slots (0 for an item it does
        not know or may not show, or that its retrieval does not reach), its reward model's prediction for
        each logged item (calibrated scores; None without a calibration), and that prediction for the item
        its own sampled slate puts in each slot (the direct-method term of doubly robust).
        """
        calibration = self.bundle.score_calibration
        decisions = []
        for view, logged in zip(views, slates, strict=True):
            context = view.context
            positions = view.positions([self.item_index.get(item) for item in logged])
            known = np.asarray([position is not None for position in positions])
            items = np.asarray([position for position in positions if position is not None], np.int64)
            propensities = np.zeros(len(logged))
            if items.size:
                propensities[known] = context.policy.slate_propensities(
                    scores=context.served_from, excluded=context.excluded, items=items, state=context.state
                )
            predicted = None if calibration is None else calibration.probabilities(context.values)
            logged_predictions = None
            own_predictions = None
            if predicted is not None:
                logged_predictions = np.zeros(len(logged))
                logged_predictions[known] = predicted[items]
                k = min(len(logged), int((~context.excluded).sum()))
                own = context.policy.select(
                    scores=context.served_from, excluded=context.excluded, k=k, rng=rng, state=context.state
                )
                own_predictions = np.zeros(len(logged))
                own_predictions[:k] = predicted[own.items]
            decisions.append(LoggedDecision(propensities, logged_predictions, own_predictions))
        return decisions

    def ranked_items(self, requests: Sequence[Request], depth: int) -> list[list[str]]:
        """Each request's best `depth` item ids by the scores its policy serves from (excluded ones left out).

        The view `logged_decisions` replays; for comparing two versions' choices on logged traffic.
        """
        ranked = []
        for view in self.request_views(requests):
            context = view.context
            size = min(depth, int((~context.excluded).sum()))
            best = top_k_indices(allowed_scores(context.served_from, context.excluded, size), size)
            ranked.append([self.bundle.item_ids[row] for row in view.catalogue_rows(best)])
        return ranked

    def logged_exposures(
        self,
        views: Sequence[RequestView],
        slates: Sequence[Sequence[str]],
        *,
        examination: np.ndarray,
        rng: np.random.Generator,
        draws: int,
        floor: float = 0.0,
        floor_pool: int | None = None,
    ) -> list[LoggedExposure]:
        """This recommender's examination-weighted exposure of each logged item, request by request.

        e(a) = Σ_s θ_s·P(a in slot s) under its policy in the logged request's view (`request_views`, as
        `logged_decisions` replays it), served with exploration floor `floor` over `floor_pool`; averaged
        over `draws` of its own slates (`explorec.policies.slates.policy_exposure`); 0 for an item outside
        the view. Also the exposure-weighted mean of its calibrated predictions over the view's items (the
        direct-method term of the position-based doubly robust estimator), None without a calibration.
        """
        calibration = self.bundle.score_calibration
        exposures = []
        for view, logged in zip(views, slates, strict=True):
            context = view.context
            weights = np.asarray(examination, dtype=np.float64)[: len(logged)]
            exposure = policy_exposure(
                context.policy,
                scores=context.served_from,
                excluded=context.excluded,
                state=context.state,
                examination=weights,
                rng=rng,
                draws=draws,
            )
            if floor > 0.0:
                uniform = floor_exposure(
                    context.served_from, context.excluded, examination=weights, pool=floor_pool
                )
                exposure = (1.0 - floor) * exposure + floor * uniform
            positions = view.positions([self.item_index.get(item) for item in logged])
            of_logged = np.asarray([0.0 if p is None else exposure[p] for p in positions])
            predicted = None if calibration is None else calibration.probabilities(context.values)
            expected = None if predicted is None else float(exposure @ predicted)
            exposures.append(LoggedExposure(of_logged, expected))
        return exposures
