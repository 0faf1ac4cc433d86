"""Imports only point down: the core's layers, the API packages and the Airflow glue.

Every module of include/apisync and plugins/apisync_airflow belongs to one layer (LAYERS, lowest
first; the longest matching prefix decides). A module imports only modules of its own layer or a lower
one, an API package (`apisync.apis.<api>`) imports no other API, nothing generic imports an API package
(only `apisync.apis`, which registers them all), and no two modules import each other, directly or
round a circle. Imports inside functions count: they only hide an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = (ROOT / "include", ROOT / "plugins")
PACKAGES = ("apisync", "apisync_airflow")

# Lowest first. A module's layer is that of the longest prefix naming it (a package or a module; a
# trailing dot: only what is below it). The package `apisync` itself is empty and belongs to none.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("apisync._version", "apisync.errors", "apisync.formats",
                    "apisync.failpoints", "apisync.settings", "apisync.metrics")),
    ("clients", ("apisync.http", "apisync.kafka", "apisync.events", "apisync.rules", "apisync.connections")),
    ("registry", ("apisync.registry",)),
    # what the APIs and the engines build on: the fence and ledger, checkpoints, topics, the source and
    # webhook toolkits, the API client
    ("toolkit", ("apisync.kafka.topics", "apisync.kafka.admin", "apisync.fence", "apisync.ledger",
                 "apisync.ledger_states", "apisync.ledger_store", "apisync.checkpoints", "apisync.sources",
                 "apisync.webhooks.signatures", "apisync.webhooks.payloads", "apisync.webhooks.context",
                 "apisync.webhooks.sink", "apisync.api_client", "apisync.refetch_plan",
                 "apisync.refetch_outcomes")),
    ("apis", ("apisync.apis.",)),  # each API's own package (a trailing dot: below apisync.apis)
    ("engines", ("apisync.sync", "apisync.normalizer", "apisync.webhooks", "apisync.follow")),
    ("entry points", ("apisync.apis", "apisync.cli", "apisync.__main__", "apisync.webhooks.__main__")),
    ("airflow", ("apisync_airflow",)),
)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    found = {}
    for root in SOURCE_ROOTS:
        for package in PACKAGES:
            for path in (root / package).rglob("*.py") if (root / package).is_dir() else ():
                found[module_name(path, root)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The known modules a file imports at any depth (`from a import b` counts a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    files = modules()
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def api_package(module: str) -> str | None:
    """`stripe` for apisync.apis.stripe and its modules; None for anything generic."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["apisync", "apis"] else None


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module`."""
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = (module.startswith(prefix) if prefix.endswith(".")
                       else module == prefix or module.startswith(prefix + "."))
            if matches and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None and module != "apisync":
        raise LookupError(f"{module} belongs to no layer: add it to LAYERS")
    return -1 if best is None else best


def wrong_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer, from one API to another, or from generic code to an API."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_api, target_api = api_package(module), api_package(target)
            if layer_of(target) > layer_of(module):
                found.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                             f"({LAYERS[layer_of(target)][0]}): a lower layer imports a higher one")
            elif target_api and source_api and source_api != target_api:
                found.append(f"{module} imports {target}: one API's package imports another's")
            elif target_api and not source_api and module != "apisync.apis":
                found.append(f"{module} imports {target}: generic code names an API package")
    return found


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


def test_the_registry_sits_at_the_bottom_of_the_core():
    graph = import_graph()
    assert graph["apisync.registry"] <= {"apisync.connections", "apisync.http.retry", "apisync.rules"}
    assert graph["apisync.rules"] == set()  # rules are data: the registry hands them the spec's
    assert graph["apisync.connections"] <= {"apisync.settings"}  # connection specs and their mapping
    assert graph["apisync.settings"] == set()


def test_every_import_points_down():
    graph = import_graph()
    assert len(graph) > 60  # not vacuous: both packages were parsed
    assert {"apisync.fence", "apisync_airflow.hooks", "apisync.apis.stripe"} <= set(graph)
    assert wrong_arrows(graph) == []


def test_there_is_no_import_circle():
    graph = import_graph()
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_every_api_is_one_package():
    """An API is a folder under apisync/apis, registered by apisync.apis; nothing vendor lives elsewhere."""
    apis = {api_package(name) for name in modules()} - {None}
    assert {"stripe", "github", "salesforce", "hubspot"} <= apis
    registering = (ROOT / "include" / "apisync" / "apis" / "__init__.py").read_text()
    assert all(f"register({api}.SPEC)" in registering for api in apis)


@pytest.mark.parametrize(("graph", "complaint"), [
    ({"apisync.fence": {"apisync.normalizer"}, "apisync.normalizer": set()}, "a lower layer imports a higher one"),
    ({"apisync.registry": {"apisync.apis"}, "apisync.apis": set()}, "a lower layer imports a higher one"),
    ({"apisync.normalizer": {"apisync.apis.stripe"}, "apisync.apis.stripe": set()}, "generic code names"),
    ({"apisync.apis.github.source": {"apisync.apis.stripe.lists"}, "apisync.apis.stripe.lists": set()},
     "one API's package imports another's"),
    ({"apisync_airflow.hooks": {"apisync.apis.salesforce.spec"}, "apisync.apis.salesforce.spec": set()},
     "generic code names"),
])
def test_the_checker_finds_a_wrong_arrow(graph, complaint):
    assert any(complaint in line for line in wrong_arrows(graph))


def test_the_checker_accepts_arrows_down():
    graph = {"apisync.normalizer": {"apisync.fence", "apisync.registry"},
             "apisync.apis.stripe.spec": {"apisync.registry", "apisync.sources.base"},
             "apisync.apis": {"apisync.apis.stripe.spec"}, "apisync_airflow.hooks": {"apisync.apis"}}
    assert wrong_arrows(graph) == []


def test_the_checker_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
