"""The generic layers name no vendor: what apisync knows about one API lives in `apisync/apis/<api>/`.

Every module of the Airflow plugin and every module of the core outside `apisync/apis/` is read as code
(its syntax tree: string constants, names, attributes, arguments, imports); docstrings and comments may
still name an API as an example.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "include" / "apisync"
PLUGIN = ROOT / "plugins" / "apisync_airflow"
VENDORS = re.compile(r"stripe|github|salesforce|hubspot", re.IGNORECASE)


def generic_modules() -> list[Path]:
    """The plugin's modules and the core's, except the API packages."""
    core = [path for path in CORE.rglob("*.py") if (CORE / "apis") not in path.parents]
    return sorted([*PLUGIN.rglob("*.py"), *core])


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions."""
    owners = [tree, *(node for node in ast.walk(tree)
                      if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    found = set()
    for owner in owners:
        first = owner.body[0] if owner.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            found.add(id(first.value))
    return found


def _words(node: ast.AST) -> Iterator[str]:
    """What a node says as code: a string constant, or the name it defines, reads or imports."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield node.name
    elif isinstance(node, ast.arg | ast.keyword) and node.arg:
        yield node.arg
    elif isinstance(node, ast.alias):
        yield node.name
        if node.asname:
            yield node.asname
    elif isinstance(node, ast.ImportFrom) and node.module:
        yield node.module


def vendor_hits(source: str) -> list[tuple[int, str]]:
    """(line, word) for every vendor name the source uses as code, docstrings left out."""
    tree = ast.parse(source)
    skipped = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        hits.extend((getattr(node, "lineno", 0), word) for word in _words(node) if VENDORS.search(word))
    return sorted(set(hits))


def test_the_generic_layers_name_no_vendor():
    modules = generic_modules()
    assert len(modules) > 60 and PLUGIN / "hooks.py" in modules  # not vacuous: the whole tree is read
    hits = [f"{path.relative_to(ROOT)}:{line}: {word!r}" for path in modules
            for line, word in vendor_hits(path.read_text())]
    assert hits == [], "vendor names in generic code:\n" + "\n".join(hits)


def test_the_checker_reads_code_and_leaves_docstrings_and_comments():
    source = ('"""Stripe, as an example."""\n'
              "# GitHub in a comment\n"
              "def f(hubspot_id):\n"
              '    """Salesforce in a docstring."""\n'
              '    return f"{x}-stripe" if api == "Salesforce" else GITHUB_URL\n')
    assert vendor_hits(source) == [(3, "hubspot_id"), (5, "-stripe"), (5, "GITHUB_URL"), (5, "Salesforce")]
