"""A registry of named components that a config chooses by name (policies, data sources, splits).

Built-in entries are given when the registry is made; an extension adds its own with `register` before the
config is loaded. The registry is the one list of its names: config validation, the CLI and the Prefect
forms read `names()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Components of one kind by name, built-ins first, then extensions in registration order."""

    def __init__(self, kind: str, built_in: Iterable[tuple[str, T]]) -> None:
        """Make the registry of `kind` (e.g. "policy") holding the built-in (name, component) pairs."""
        self.kind = kind
        self._entries: dict[str, T] = dict(built_in)
        self._built_in = frozenset(self._entries)

    def register(self, name: str, component: T) -> T:
        """Add `component` under a new `name` (registering the same component again changes nothing)."""
        registered = self._entries.get(name)
        if registered is not None and registered is not component:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = component
        return component

    def unregister(self, name: str) -> None:
        """Remove an extension; built-in entries stay."""
        if name in self._built_in:
            raise ValueError(f"{self.kind} {name!r} is built in and cannot be unregistered")
        self._entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Return the registered names, built-ins first."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        """Whether `name` is registered."""
        return name in self._entries

    def get(self, name: str) -> T:
        """Return the component registered under `name`; an unknown name raises ValueError."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {', '.join(self._entries)}")
        return self._entries[name]
