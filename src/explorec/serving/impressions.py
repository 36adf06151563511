"""The impression log: every slate the service serves, slot by slot, and the feedback on it.

One SQL store behind SQLAlchemy Core: SQLite in WAL mode under `mlruns/` by default (one server), or a
PostgreSQL URL (several servers writing to one log). An impression (one served slate) and its slots are
written in one transaction, so a killed server leaves no torn slate: either every slot of a slate is there
or none. Feedback rows refer to an impression by id and to a slot by item id.

The service writes through `append_soon`: one writer thread takes every slate waiting at that moment and
writes them in one transaction (a group commit), then completes each slate's future; a slate counts as
logged only once that commit returned, so an answer waiting on its future never leaves before its slate is
in the log, and concurrent requests share one commit instead of queueing for one each.

Tables:
- `impressions`: impression_id, request_id, served_at (unix seconds), user_id, model_name, model_version,
  policy, exploration_rate, k, history_source, cold_start, propensity_kind ('policy' or 'deterministic'),
  request (the validated request as JSON: what an off-policy evaluation replays).
- `impression_slots`: impression_id, slot, item_id, score, propensity, explored, new_item, explanation.
- `feedback`: impression_id, item_id, event ('click', 'skip' or 'dwell'), dwell_seconds, received_at.
- `catalogue_additions`: items added through the service (item_id, title, text, genres, added_at), so a
  restarted service, or the next champion, serves them too.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from explorec.config import project_root
from explorec.errors import ExplorecError
from explorec.serving.new_items import NewItem

FEEDBACK_EVENTS = ("click", "skip", "dwell")
SQLITE_PREFIX = "sqlite:///"
MAX_GROUP_COMMIT = 256
"""Most slates the writer thread puts in one transaction."""


class ImpressionLogError(ExplorecError):
    """The impression log cannot be opened or does not hold what was asked for."""


@dataclass(frozen=True)
class SlotRecord:
    """One slot of a served slate."""

    item_id: str
    score: float
    propensity: float
    explored: bool
    new_item: bool = False
    explanation: str = ""


@dataclass(frozen=True)
class ImpressionRecord:
    """One served slate and how it was made."""

    impression_id: str
    request_id: str
    served_at: float
    user_id: str | None
    model_name: str
    model_version: str
    policy: str
    exploration_rate: float
    k: int
    history_source: str
    cold_start: bool
    propensity_kind: str
    request: str
    slots: tuple[SlotRecord, ...]
    exploration_floor: float = 0.0
    """Share of floor slates the service mixed in (the propensities are the mixture's)."""
    floor_pool: int | None = None
    """A floor slate's items: the model's best this many by score (None: any allowed item)."""


@dataclass(frozen=True)
class FeedbackEvent:
    """A client's feedback on one slot of an impression."""

    impression_id: str
    item_id: str
    event: str
    dwell_seconds: float | None = None


def _additions_table(metadata: sa.MetaData) -> sa.Table:
    """Declare the table of items added through the service."""
    return sa.Table(
        "catalogue_additions",
        metadata,
        sa.Column("item_id", sa.String(256), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("genres", sa.Text, nullable=False),
        sa.Column("added_at", sa.Float, nullable=False),
    )


def _added_impression_columns() -> list[sa.Column[Any]]:
    """Impression columns added after the first logs were written (NULL in their older rows: unknown)."""
    return [sa.Column("exploration_floor", sa.Float), sa.Column("floor_pool", sa.Integer)]


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Add to an existing log the columns of `table` it was written without (ALTER TABLE ... ADD COLUMN)."""
    present = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in present]
    if not missing:
        return
    for column in missing:
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
        except sa.exc.DBAPIError:
            # another server opening the same log may have added it first
            added = {c["name"] for c in sa.inspect(engine).get_columns(table.name)}
            if column.name not in added:
                raise


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    """Declare the impression, slot and feedback tables of the log on `metadata`."""
    impressions = sa.Table(
        "impressions",
        metadata,
        sa.Column("impression_id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("served_at", sa.Float, nullable=False, index=True),
        sa.Column("user_id", sa.String(256)),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("exploration_rate", sa.Float, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("history_source", sa.String(16), nullable=False),
        sa.Column("cold_start", sa.Boolean, nullable=False),
        sa.Column("propensity_kind", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        *_added_impression_columns(),
    )
    slots = sa.Table(
        "impression_slots",
        metadata,
        sa.Column(
            "impression_id", sa.String(64), sa.ForeignKey("impressions.impression_id"), primary_key=True
        ),
        sa.Column("slot", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("propensity", sa.Float, nullable=False),
        sa.Column("explored", sa.Boolean, nullable=False),
        sa.Column("new_item", sa.Boolean, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
    )
    feedback = sa.Table(
        "feedback",
        metadata,
        sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("impression_id", sa.String(64), sa.ForeignKey("impressions.impression_id"), index=True),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("dwell_seconds", sa.Float),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    return impressions, slots, feedback


def resolve_log_url(url: str) -> str:
    """Make a relative `sqlite:///path` absolute against the project root (other URLs pass unchanged)."""
    if not url.startswith(SQLITE_PREFIX) or url.startswith(SQLITE_PREFIX + "/"):
        return url
    path = project_root() / url.removeprefix(SQLITE_PREFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{path}"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """WAL (readers never block the writer), durable commits and a busy wait instead of 'locked' errors."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class ImpressionLog:
    """Append-only log of served slates and their feedback, in one SQL store."""

    def __init__(self, url: str) -> None:
        self.url = resolve_log_url(url)
        try:
            self.engine = sa.create_engine(self.url, future=True)
        except (sa.exc.ArgumentError, ImportError) as error:
            raise ImpressionLogError(f"impression log {url!r} cannot be opened: {error}") from None
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.metadata = sa.MetaData()
        self.impressions, self.slots, self.feedback = _tables(self.metadata)
        self.additions = _additions_table(self.metadata)
        self._write_lock = threading.Lock()
        self._writer: sa.Connection | None = None
        self._group: GroupCommit | None = None
        self._group_lock = threading.Lock()
        try:
            self.metadata.create_all(self.engine)
            _add_missing_columns(self.engine, self.impressions)
        except sa.exc.DatabaseError as error:
            raise ImpressionLogError(
                f"impression log {self.location} is not a usable database ({error.orig}); move it aside "
                "or point service.impression_log at another store"
            ) from None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sa.Connection]:
        """One transaction on the log's single writing connection (kept open: no pool checkout per slate)."""
        with self._write_lock:
            if self._writer is None or self._writer.closed:
                self._writer = self.engine.connect()
            try:
                with self._writer.begin():
                    yield self._writer
            except sa.exc.DBAPIError:
                self._writer.close()  # a broken connection is replaced on the next write
                raise

    @property
    def location(self) -> str:
        """The store, as a person would name it: the SQLite file, or the URL without its password."""
        if self.url.startswith(SQLITE_PREFIX):
            return str(Path(self.url.removeprefix(SQLITE_PREFIX)))
        return self.engine.url.render_as_string(hide_password=True)

    def append(self, records: Sequence[ImpressionRecord]) -> None:
        """Write served slates; each slate and all its slots in one transaction with the others."""
        if not records:
            return
        heads = [
            {column.name: getattr(record, column.name) for column in self.impressions.columns}
            for record in records
        ]
        slots = [
            {
                "impression_id": record.impression_id,
                "slot": position,
                "item_id": slot.item_id,
                "score": slot.score,
                "propensity": slot.propensity,
                "explored": slot.explored,
                "new_item": slot.new_item,
                "explanation": slot.explanation,
            }
            for record in records
            for position, slot in enumerate(record.slots)
        ]
        with self._writing() as connection:
            connection.execute(self.impressions.insert(), heads)
            if slots:
                connection.execute(self.slots.insert(), slots)

    def append_soon(self, record: ImpressionRecord) -> Future[None]:
        """Queue a served slate for the writer thread; the future completes once its transaction committed."""
        with self._group_lock:
            if self._group is None:
                self._group = GroupCommit(self)
            return self._group.submit(record)

    def unknown_impressions(self, impression_ids: Sequence[str]) -> list[str]:
        """Return the ids among `impression_ids` that the log does not hold."""
        wanted = sorted(set(impression_ids))
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(self.impressions.c.impression_id).where(
                    self.impressions.c.impression_id.in_(wanted)
                )
            )
            known = {row[0] for row in found}
        return [name for name in wanted if name not in known]

    def slot_items(self, impression_id: str) -> list[str]:
        """Return the item ids of an impression's slots, in slot order."""
        query = (
            sa.select(self.slots.c.item_id)
            .where(self.slots.c.impression_id == impression_id)
            .order_by(self.slots.c.slot)
        )
        with self.engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def record_feedback(self, events: Sequence[FeedbackEvent]) -> int:
        """Append feedback events (their impressions must exist); return how many were written."""
        if not events:
            return 0
        now = time.time()
        rows = [
            {
                "impression_id": event.impression_id,
                "item_id": event.item_id,
                "event": event.event,
                "dwell_seconds": event.dwell_seconds,
                "received_at": now,
            }
            for event in events
        ]
        with self._writing() as connection:
            connection.execute(self.feedback.insert(), rows)
        return len(rows)

    def record_additions(self, items: Sequence[NewItem]) -> None:
        """Store added items (a known id is replaced), in one transaction."""
        now = time.time()
        rows = [
            {
                "item_id": item.item_id,
                "title": item.title,
                "text": item.text,
                "genres": "|".join(item.genres),
                "added_at": now,
            }
            for item in items
        ]
        ids = [item.item_id for item in items]
        with self._writing() as connection:
            connection.execute(self.additions.delete().where(self.additions.c.item_id.in_(ids)))
            connection.execute(self.additions.insert(), rows)

    def catalogue_additions(self) -> list[NewItem]:
        """Every item added through the service, oldest first."""
        query = sa.select(self.additions).order_by(self.additions.c.added_at, self.additions.c.item_id)
        with self.engine.connect() as connection:
            return [
                NewItem(row.item_id, row.title, row.text, tuple(g for g in row.genres.split("|") if g))
                for row in connection.execute(query)
            ]

    def counts(self) -> dict[str, int]:
        """Return the number of impressions, slots and feedback events in the log."""
        with self.engine.connect() as connection:
            return {
                name: int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
                for name, table in (
                    ("impressions", self.impressions),
                    ("slots", self.slots),
                    ("feedback", self.feedback),
                )
            }

    def logged_slots(self, batch_size: int = 10_000) -> Iterator[list[dict[str, Any]]]:
        """Yield the slots joined with their impression and clicks, in batches (streamed, not loaded)."""
        clicks = (
            sa.select(self.feedback.c.impression_id, self.feedback.c.item_id)
            .where(self.feedback.c.event == "click")
            .distinct()
            .subquery()
        )
        query = (
            sa.select(
                self.impressions.c.impression_id,
                self.impressions.c.served_at,
                self.impressions.c.user_id,
                self.impressions.c.model_name,
                self.impressions.c.model_version,
                self.impressions.c.exploration_floor,
                self.impressions.c.floor_pool,
                self.impressions.c.policy,
                self.impressions.c.exploration_rate,
                self.impressions.c.propensity_kind,
                self.impressions.c.request,
                self.slots.c.slot,
                self.slots.c.item_id,
                self.slots.c.score,
                self.slots.c.propensity,
                self.slots.c.explored,
                clicks.c.item_id.is_not(None).label("clicked"),
            )
            .join(self.slots, self.slots.c.impression_id == self.impressions.c.impression_id)
            .outerjoin(
                clicks,
                (clicks.c.impression_id == self.slots.c.impression_id)
                & (clicks.c.item_id == self.slots.c.item_id),
            )
            .order_by(self.impressions.c.served_at, self.slots.c.impression_id, self.slots.c.slot)
        )
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True).execute(query)
            while rows := result.mappings().fetchmany(batch_size):
                yield [dict(row) for row in rows]

    def close(self) -> None:
        """Write what is queued, stop the writer thread and release the store's connections."""
        with self._group_lock:
            if self._group is not None:
                self._group.close()
                self._group = None
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
        self.engine.dispose()


class GroupCommit:
    """A writer thread for one log: each transaction holds every slate queued when it starts (a group commit).

    A slate's future is completed only after the commit that holds it returned (or with the error that
    stopped it), so a caller that waits on it never answers for a slate that is not in the log. When a group
    fails, its slates are retried one per transaction, so one bad slate cannot take the others down with it.
    """

    def __init__(self, log: ImpressionLog, max_group: int = MAX_GROUP_COMMIT) -> None:
        self._log = log
        self._max_group = max_group
        self._queue: queue.SimpleQueue[tuple[ImpressionRecord, Future[None]] | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="explorec-impression-writer", daemon=True)
        self._thread.start()

    def submit(self, record: ImpressionRecord) -> Future[None]:
        """Queue one slate; return the future that completes when it is committed."""
        if self._closed:
            raise ImpressionLogError(f"impression log {self._log.location} is closed")
        future: Future[None] = Future()
        self._queue.put((record, future))
        return future

    def close(self) -> None:
        """Write every slate queued so far, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        """Take what is waiting (at most `max_group` slates), write it in one transaction; until closed."""
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self._max_group:
                try:
                    waiting = self._queue.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:
                    stopping = True
                    break
                group.append(waiting)
            self._write(group)

    def _write(self, group: list[tuple[ImpressionRecord, Future[None]]]) -> None:
        """Commit a group and complete its futures; a failed group is retried one slate at a time.

        A slate whose waiter gave up (a cancelled future) is still written: its answer may have been on its
        way, and a logged slate that was never seen is the safe side of the guarantee.
        """
        waiting = [future for _, future in group if future.set_running_or_notify_cancel()]
        try:
            self._log.append([record for record, _ in group])
        except Exception as error:  # handed to the waiting request, which answers 500 for its slate
            if len(group) > 1:
                for record, future in group:
                    self._retry(record, future if future in waiting else None)
                return
            for future in waiting:
                future.set_exception(error)
            return
        for future in waiting:
            future.set_result(None)

    def _retry(self, record: ImpressionRecord, future: Future[None] | None) -> None:
        """Write one slate of a failed group on its own; complete its future (None: nobody waits)."""
        try:
            self._log.append([record])
        except Exception as error:
            if future is not None:
                future.set_exception(error)
            return
        if future is not None:
            future.set_result(None)
