"""The recommendation service: a FastAPI app over a `Recommender` that logs every slate it serves.

Endpoints:
- `POST /recommend`: one request in the served model's schema (user_id, recent_item_ids, k,
  exploration_rate, seed, shown_item_ids, clicked_item_ids) → the slate with per slot its score, propensity,
  explored flag and explanation, plus an `impression_id` for feedback. The slate is in the impression log
  before the answer leaves.
- `POST /feedback`: clicks, skips and dwell times on one impression's items.
- `POST /items`: add or update items from their text: the bundle's own encoder and item tower (without an
  ID embedding) give each a vector, servable by the next request; kept in the log's `catalogue_additions`, so
  a restart or the next champion serves them too (409 when the model has no text tower).
- `GET /health`: the model version served and since when; `GET /metrics`: Prometheus text.
Unknown fields, wrong types, out-of-range values and oversized bodies get a 4xx with a one-line reason
naming the field; nothing is logged for a refused request.

The model comes from a `ModelSource`: `RegistrySource` follows a registry alias (a move is picked up without
a restart, and a version without a passed gate or an audited forced promotion is never served);
`FixedSource` serves one recommender (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from explorec.serving.explanations import InterestClusters, explain_slots, fit_interest_clusters
from explorec.serving.impressions import FeedbackEvent, ImpressionLog, ImpressionRecord, SlotRecord
from explorec.serving.new_items import NewItem, NewItemEmbedder, NewItemsUnsupportedError
from explorec.serving.recommender import Recommender, RequestError, parse_request

if TYPE_CHECKING:
    import numpy as np

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_ID_LENGTH = 256
ENDPOINTS = ("/recommend", "/feedback", "/items", "/health", "/metrics")
"""The paths metrics are labelled with; any other path counts as 'other' (labels stay bounded)."""


class ServingRefusedError(Exception):
    """The registry points at a version that must not serve (no passed gate, no audited forced promotion)."""


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and where it came from."""

    name: str
    version: str
    recommender: Recommender
    loaded_at: float


class ModelSource(Protocol):
    """Where the service's model comes from: the current one, and a check for a newer one."""

    def current(self) -> ServedModel:
        """The model to serve now."""
        ...

    def refresh(self) -> str | None:
        """Load a newer model if there is one; return a line saying what changed, or None."""
        ...


class FixedSource:
    """Serves one recommender under a fixed name and version."""

    def __init__(self, recommender: Recommender, name: str = "local", version: str = "0") -> None:
        self._model = ServedModel(name, version, recommender, time.time())

    def current(self) -> ServedModel:
        """The one model."""
        return self._model

    def refresh(self) -> str | None:
        """Nothing to follow."""
        return None


class RecommendBody(BaseModel):
    """One recommendation request, as the served pyfunc model takes it."""

    model_config = ConfigDict(extra="forbid", strict=False)

    user_id: str | int | None = None
    recent_item_ids: list[str | int] | None = None
    k: int | None = None
    exploration_rate: float | None = None
    seed: int | None = None
    shown_item_ids: list[str | int] | None = None
    clicked_item_ids: list[str | int] | None = None


class FeedbackBody(BaseModel):
    """Feedback on one served slate: which of its items were clicked or skipped, and dwell times."""

    model_config = ConfigDict(extra="forbid")

    impression_id: str = Field(min_length=1, max_length=64)
    clicked_item_ids: list[str | int] = Field(default_factory=list)
    skipped_item_ids: list[str | int] = Field(default_factory=list)
    dwell_seconds: dict[str, float] = Field(default_factory=dict)


class NewItemBody(BaseModel):
    """An item to add: its id, title, the text the encoder reads, and optional genres."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    title: str = Field(default="", max_length=1000)
    text: str = Field(min_length=1, max_length=20_000)
    genres: list[str] = Field(default_factory=list, max_length=50)


class ItemsBody(BaseModel):
    """Items to add to (or update in) the served catalogue."""

    model_config = ConfigDict(extra="forbid")

    items: list[NewItemBody] = Field(min_length=1, max_length=1000)


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of its own (no process-wide state)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "explorec_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "explorec_request_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slots = Counter("explorec_slots_served", "Slots served", registry=self.registry)
        self.explored = Counter(
            "explorec_slots_explored", "Slots the policy explored", registry=self.registry
        )
        self.new_items = Counter(
            "explorec_slots_new_item", "Slots filled by an item added after training", registry=self.registry
        )
        self.explored_share = Gauge(
            "explorec_explored_slot_share", "Share of served slots that explored", registry=self.registry
        )
        self.new_item_share = Gauge(
            "explorec_new_item_slot_share", "Share of served slots holding a new item", registry=self.registry
        )
        self.feedback = Counter(
            "explorec_feedback_events", "Feedback events by kind", ["event"], registry=self.registry
        )
        self.version = Gauge(
            "explorec_model_version", "Registry version being served", registry=self.registry
        )

    def count_slots(self, served: int, explored: int, new: int) -> None:
        """Add one slate's slots and refresh the shares."""
        self.slots.inc(served)
        self.explored.inc(explored)
        self.new_items.inc(new)
        total = max(self.slots._value.get(), 1.0)
        self.explored_share.set(self.explored._value.get() / total)
        self.new_item_share.set(self.new_items._value.get() / total)

    def text(self) -> bytes:
        """The metrics in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _counted(app: Any, metrics: ServiceMetrics) -> Callable[..., Any]:
    """ASGI middleware: each HTTP request's latency and status, by endpoint (plain ASGI: no extra task)."""

    async def middleware(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            metrics.requests.labels(endpoint, str(status)).inc()

    return middleware


def _body_limit(app: Any, max_bytes: int) -> Callable[..., Any]:
    """ASGI middleware: a body longer than `max_bytes` (declared or streamed) gets 413 before parsing."""

    async def middleware(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _reject(send, 413, f"request body of {int(declared)} bytes; at most {max_bytes}")
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _BodyTooLargeError(seen)
            return message

        try:
            await app(scope, counted, send)
        except _BodyTooLargeError as error:
            await _reject(send, 413, f"request body over {max_bytes} bytes (read {error.args[0]})")

    return middleware


class _BodyTooLargeError(Exception):
    """A streamed body passed the limit."""


async def _reject(send: Callable[..., Any], status: int, reason: str) -> None:
    """Send a JSON error answer from ASGI middleware."""
    body = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _validation_reason(errors: Sequence[dict[str, Any]]) -> str:
    """One line from pydantic's errors: the first failing field and why (unknown fields named as such)."""
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    if first.get("type") == "extra_forbidden":
        return f"unknown field {location!r}"
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return f"{location or 'body'}: {first.get('msg', 'invalid')}"


class RecommendationService:
    """Answers, logs and counts: the part of the service that does not depend on HTTP."""

    def __init__(self, source: ModelSource, log: ImpressionLog, *, max_feedback_items: int = 1000) -> None:
        self.source = source
        self.log = log
        self.metrics = ServiceMetrics()
        self.max_feedback_items = max_feedback_items
        self._lock = threading.Lock()  # the recommender's policy caches are not thread-safe
        self.new_item_ids: set[str] = set()
        self._embedder: tuple[str, NewItemEmbedder] | None = None
        self._clusters: tuple[str, InterestClusters | None] | None = None
        self._catalogue_version: str | None = None

    def model(self) -> ServedModel:
        """The source's current model, with every item added through the service in its catalogue."""
        model = self.source.current()
        if model.version != self._catalogue_version:
            with self._lock:
                if model.version != self._catalogue_version:
                    additions = self.log.catalogue_additions()
                    if additions:
                        self._add(model, additions)
                    self._catalogue_version = model.version
        return model

    def clusters(self, model: ServedModel) -> InterestClusters | None:
        """The interest clusters of `model`'s catalogue (None without text embeddings), fitted once."""
        if self._clusters is None or self._clusters[0] != model.version:
            bundle = model.recommender.bundle
            fitted = None
            if bundle.text_embeddings is not None:
                fitted = fit_interest_clusters(bundle.text_embeddings, bundle.titles)
            self._clusters = (model.version, fitted)
        return self._clusters[1]

    def embedder(self, model: ServedModel) -> NewItemEmbedder:
        """The new-item embedder of `model` (NewItemsUnsupportedError when it has no text tower)."""
        if self._embedder is None or self._embedder[0] != model.version:
            self._embedder = (model.version, NewItemEmbedder(model.recommender.bundle))
        return self._embedder[1]

    def warm_up(self) -> bool:
        """Load the model, apply earlier additions and load the text encoder; False when new items are off."""
        model = self.model()
        self.clusters(model)
        try:
            self.embedder(model).warm_up()
        except NewItemsUnsupportedError:
            return False
        return True

    def _add(self, model: ServedModel, items: Sequence[NewItem]) -> tuple[int, int]:
        """Embed `items` and add them to `model`'s catalogue (caller holds the lock)."""
        return self._extend(model, items, *self.embedder(model).embed(items))

    def _extend(
        self, model: ServedModel, items: Sequence[NewItem], vectors: np.ndarray, texts: np.ndarray
    ) -> tuple[int, int]:
        """Add embedded `items` to `model`'s catalogue (caller holds the lock); return (added, updated)."""
        counts = model.recommender.add_items(
            [item.item_id for item in items], [item.title or item.item_id for item in items], vectors, texts
        )
        self.new_item_ids.update(item.item_id for item in items)
        return counts

    def add_items(self, body: ItemsBody) -> dict[str, Any]:
        """Add or update items from their text; they are served from the next request on."""
        items = [NewItem(i.item_id, i.title, i.text, tuple(i.genres)) for i in body.items]
        if len({item.item_id for item in items}) != len(items):
            raise RequestError("items holds the same item_id twice")
        started = time.perf_counter()
        model = self.model()
        vectors, texts = self.embedder(model).embed(items)  # outside the lock: requests go on meanwhile
        with self._lock:
            self.log.record_additions(items)
            added, updated = self._extend(model, items, vectors, texts)
        return {
            "added": added,
            "updated": updated,
            "n_items": model.recommender.bundle.n_items,
            "model": {"name": model.name, "version": model.version},
            "seconds": round(time.perf_counter() - started, 4),
        }

    def recommend(self, body: RecommendBody) -> dict[str, Any]:
        """Serve one request, write it to the impression log, and return the answer."""
        record, reply = self.answer(body)
        self.log.append([record])
        self._count(record)
        return reply

    async def recommend_logged(self, body: RecommendBody) -> dict[str, Any]:
        """`recommend` on the event loop: the slate joins the log's group commit, awaited before answering."""
        record, reply = self.answer(body)
        await asyncio.wrap_future(self.log.append_soon(record))
        self._count(record)
        return reply

    def _count(self, record: ImpressionRecord) -> None:
        """Add a logged slate's slots to the metrics."""
        slots = record.slots
        self.metrics.count_slots(
            len(slots), sum(slot.explored for slot in slots), sum(slot.new_item for slot in slots)
        )

    def answer(self, body: RecommendBody) -> tuple[ImpressionRecord, dict[str, Any]]:
        """The slate for one request, as its log record and its answer (nothing written yet)."""
        model = self.model()
        limits = model.recommender.limits
        fields = body.model_dump(exclude_none=True)
        request = parse_request(fields, limits)
        with self._lock:
            history, _, _ = model.recommender.resolve_history(request)
            answer = model.recommender.recommend([request])[0]
            new = [item in self.new_item_ids for item in answer.item_ids]
            explanations = explain_slots(model.recommender, history, answer, new, self.clusters(model))
            policy = model.recommender.policy(request.exploration_rate)
        rate = float(policy.exploration_rate)
        deterministic = all(p == 1.0 for p in answer.propensities)
        record = ImpressionRecord(
            impression_id=uuid.uuid4().hex,
            request_id=uuid.uuid4().hex,
            served_at=time.time(),
            user_id=answer.user_id,
            model_name=model.name,
            model_version=model.version,
            policy=model.recommender.bundle.policy.name,
            exploration_rate=rate,
            k=request.k,
            history_source=answer.history_source,
            cold_start=answer.cold_start,
            propensity_kind="deterministic" if deterministic else "policy",
            request=json.dumps(dataclasses.asdict(request)),
            slots=tuple(
                SlotRecord(item, score, propensity, explored, is_new, reason)
                for item, score, propensity, explored, is_new, reason in zip(
                    answer.item_ids,
                    answer.scores,
                    answer.propensities,
                    answer.explored,
                    new,
                    explanations,
                    strict=True,
                )
            ),
            exploration_floor=model.recommender.exploration_floor,
            floor_pool=model.recommender.exploration_floor_pool,
        )
        return record, {
            "impression_id": record.impression_id,
            "model": {"name": model.name, "version": model.version},
            "policy": record.policy,
            "exploration_rate": rate,
            "propensity_kind": record.propensity_kind,
            "user_id": answer.user_id,
            "history_source": answer.history_source,
            "cold_start": answer.cold_start,
            "n_unknown_items": answer.n_unknown_items,
            "items": [
                {"slot": slot, "title": title, **vars(logged)}  # flat fields: asdict recurses
                for slot, (title, logged) in enumerate(zip(answer.titles, record.slots, strict=True))
            ],
        }

    def feedback(self, body: FeedbackBody) -> dict[str, Any]:
        """Record clicks, skips and dwell times on one impression's items."""
        events = [
            *(FeedbackEvent(body.impression_id, str(item), "click") for item in body.clicked_item_ids),
            *(FeedbackEvent(body.impression_id, str(item), "skip") for item in body.skipped_item_ids),
            *(
                FeedbackEvent(body.impression_id, str(item), "dwell", float(seconds))
                for item, seconds in body.dwell_seconds.items()
            ),
        ]
        if not events:
            raise RequestError("feedback names no clicked_item_ids, skipped_item_ids or dwell_seconds")
        if len(events) > self.max_feedback_items:
            raise RequestError(f"{len(events)} feedback events; at most {self.max_feedback_items}")
        for event in events:
            if event.dwell_seconds is not None and not 0.0 <= event.dwell_seconds < 86_400.0:
                raise RequestError(f"dwell_seconds[{event.item_id!r}] must lie in [0, 86400)")
        shown = self.log.slot_items(body.impression_id)
        if not shown:
            raise LookupError(f"impression_id {body.impression_id!r} is not in the impression log")
        not_shown = sorted({event.item_id for event in events} - set(shown))
        if not_shown:
            raise RequestError(f"items {not_shown[:5]} were not in impression {body.impression_id!r}")
        written = self.log.record_feedback(events)
        for event in events:
            self.metrics.feedback.labels(event.event).inc()
        return {"impression_id": body.impression_id, "recorded": written}

    def health(self) -> dict[str, Any]:
        """What is served and since when."""
        model = self.model()
        return {
            "status": "ok",
            "model": {"name": model.name, "version": model.version, "loaded_at": model.loaded_at},
            "policy": model.recommender.bundle.policy.name,
            "n_items": model.recommender.bundle.n_items,
            "n_new_items": len(self.new_item_ids),
            "impression_log": self.log.location,
        }


def _lifespan(service: RecommendationService, poll_seconds: float) -> Callable[..., Any]:
    """The app's lifespan: a thread that re-reads the model source every `poll_seconds` (0: none)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        stop = threading.Event()
        follower = threading.Thread(
            target=_follow, args=(service, poll_seconds, stop), name="explorec-alias-follower", daemon=True
        )
        if poll_seconds > 0:
            follower.start()
        yield
        stop.set()
        if follower.is_alive():
            follower.join(timeout=poll_seconds + 5)

    return lifespan


def _error_answers(app: Any) -> None:
    """Answer the service's errors with a 4xx and a one-line `detail`."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    answers: dict[type[Exception], tuple[int, Callable[[Any], str]]] = {
        RequestValidationError: (400, lambda error: _validation_reason(error.errors())),
        RequestError: (400, str),
        NewItemsUnsupportedError: (409, str),
        LookupError: (404, lambda error: str(error.args[0])),
    }
    for kind, (status, reason) in answers.items():

        async def answer(
            _request: Any, error: Any, status: int = status, reason: Any = reason
        ) -> JSONResponse:
            return JSONResponse({"detail": reason(error)}, status_code=status)

        app.add_exception_handler(kind, answer)


def create_app(
    service: RecommendationService, *, max_body_bytes: int = 1_000_000, poll_seconds: float = 0.0
) -> Callable[..., Any]:
    """Return the ASGI app: the FastAPI routes behind the body-size limit; polls the source when asked."""
    from fastapi import FastAPI
    from fastapi.responses import Response
    from pydantic_core import to_json

    app = FastAPI(title="explorec", lifespan=_lifespan(service, poll_seconds))
    _error_answers(app)

    @app.post("/recommend")
    async def recommend(body: RecommendBody) -> Response:
        # on the event loop: the slate is computed here (the work holds the GIL: a thread pool would only
        # add hand-offs), the log write happens in the log's writer thread and is awaited
        answer = await service.recommend_logged(body)
        return Response(to_json(answer), media_type="application/json")

    @app.post("/feedback")
    def feedback(body: FeedbackBody) -> dict[str, Any]:
        return service.feedback(body)

    @app.post("/items")
    def items(body: ItemsBody) -> dict[str, Any]:
        return service.add_items(body)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/metrics")
    def metrics() -> Response:
        service.metrics.version.set(float(service.source.current().version or 0))
        return Response(service.metrics.text(), media_type="text/plain; version=0.0.4")

    return _body_limit(_counted(app, service.metrics), max_body_bytes)


def _follow(service: RecommendationService, poll_seconds: float, stop: threading.Event) -> None:
    """Re-read the source every `poll_seconds` until stopped; a failed check is logged, serving goes on."""
    import logging

    logger = logging.getLogger("explorec.service")
    while not stop.wait(poll_seconds):
        try:
            change = service.source.refresh()
        except Exception as error:  # a registry hiccup must not stop the service
            logger.warning("model check failed: %s", error)
            continue
        if change:
            logger.warning(change)
