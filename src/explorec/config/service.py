"""Settings of `explorec serve`: where it listens, what it serves, where it logs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServiceConfig:
    """`explorec serve`: a FastAPI service over the registry's champion, logging every slate it serves."""

    host: str = "127.0.0.1"
    port: int = 8000
    alias: str = "champion"
    """Registry alias the service follows; a move is picked up without a restart."""
    poll_seconds: float = 5.0
    """How often the alias is re-read."""
    impression_log: str = "sqlite:///mlruns/impressions.db"
    """SQLAlchemy URL of the impression log: SQLite (WAL) under mlruns/ by default, or postgresql://…"""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted (a bigger one gets 413)."""
    max_feedback_items: int = 1000
    """Most events one POST /feedback may carry."""
    exploration_floor: float = 0.0
    """Share of slates served uniformly at random, so that logs of any policy (a deterministic one too)
    support off-policy evaluation of other candidates; propensities are those of the mixture."""
    exploration_floor_pool: int | None = None
    """A floor slate's items: the served model's best this many by score for the request (None: any item
    not excluded). A pool around the candidates' likely choices gives their off-policy evaluation far
    more overlap than the whole catalogue does (docs/results.md, "The loop")."""
    torch_threads: int = 1
    """Intra-op threads of the user tower (one request's tensors are tiny; more threads only contend)."""
