"""The package's import graph has no cycles: every module can be read before the modules that import it."""

from __future__ import annotations

import grimp


def _modules_on_cycles(graph: grimp.ImportGraph) -> list[str]:
    """Return the modules that import, directly or not, something that imports them back.

    A module importing itself (flows.serve does under `__main__`, to name its entrypoints) is no cycle.
    """
    return sorted(
        module
        for module in graph.modules
        if any(
            module in graph.find_upstream_modules(imported)
            for imported in graph.find_modules_directly_imported_by(module) - {module}
        )
    )


def test_the_cycle_finder_sees_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.one", "a.two", "a.three"):
        graph.add_module(module)
    graph.add_import(importer="a.one", imported="a.two")
    graph.add_import(importer="a.two", imported="a.one")
    graph.add_import(importer="a.three", imported="a.one")
    assert _modules_on_cycles(graph) == ["a.one", "a.two"]


def test_explorec_and_flows_have_no_import_cycles() -> None:
    graph = grimp.build_graph("explorec", "flows")  # function-local and TYPE_CHECKING imports included
    assert _modules_on_cycles(graph) == []
