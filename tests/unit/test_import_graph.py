"""The core library has no import circle (imports inside functions count too: they only hide one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "apisync"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The apisync modules a file imports, at any depth (`from a import b` counts a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (a → b → a), or None."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [node])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_the_core_library_has_no_import_circle():
    graph = import_graph()
    assert len(graph) > 40  # not vacuous: every module was parsed
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def imports_between(graph: dict[str, set[str]], importer: str, imported: str) -> list[str]:
    """Every import (`a → b`) from a module of package `importer` of a module of package `imported`."""
    def within(name: str, package: str) -> bool:
        return name == package or name.startswith(f"{package}.")
    return sorted(f"{a} → {b}" for a, targets in graph.items() if within(a, importer)
                  for b in targets if within(b, imported))


# Sibling engines: what both need (the API client, the normalizer's consumer group) lives below them.
@pytest.mark.parametrize(("importer", "imported"), [("apisync.normalizer", "apisync.sync"),
                                                    ("apisync.sync", "apisync.normalizer")])
def test_the_normalizer_and_the_sync_engine_do_not_import_each_other(importer, imported):
    graph = import_graph()
    assert importer in graph and imported in graph  # not vacuous: both are there
    assert imports_between(graph, importer, imported) == []


def test_the_checker_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# Where a process starts: these register the APIs (`import apisync.apis`); nothing generic may.
ENTRY_POINTS = {"apisync.cli", "apisync.webhooks.__main__"}


def _is_api_package(name: str) -> bool:
    return name == "apisync.apis" or name.startswith("apisync.apis.")


def test_generic_modules_never_import_an_api_package():
    graph = import_graph()
    upward = {name: sorted(filter(_is_api_package, imports)) for name, imports in graph.items()
              if not _is_api_package(name) and name not in ENTRY_POINTS}
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_registry_sits_at_the_bottom_of_the_core():
    graph = import_graph()
    assert graph["apisync.registry"] <= {"apisync.connections", "apisync.http.retry", "apisync.rules"}
    assert graph["apisync.rules"] == set()  # rules are data: the registry hands them the spec's
    assert graph["apisync.connections"] <= {"apisync.settings"}  # connection specs and their mapping
    assert graph["apisync.settings"] == set()
