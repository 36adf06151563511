"""The registry of named components: built-ins first, extensions added and removed by name."""

from __future__ import annotations

import pytest

from explorec.config.choices import Registry


def test_built_ins_come_first_and_extensions_follow_in_order() -> None:
    registry = Registry("widget", [("a", 1), ("b", 2)])
    assert registry.register("c", 3) == 3
    assert registry.names() == ("a", "b", "c")
    assert "c" in registry and "d" not in registry
    assert registry.get("b") == 2
    registry.unregister("c")
    assert registry.names() == ("a", "b")


def test_names_are_not_taken_twice_and_built_ins_stay() -> None:
    component = object()
    registry = Registry("widget", [("a", component)])
    assert registry.register("a", component) is component  # the same component again changes nothing
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a", object())
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("a")


def test_an_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown widget 'z'; expected one of a, b"):
        Registry("widget", [("a", 1), ("b", 2)]).get("z")
