"""The simulated GitHub and GitHubSource's requests against GitHub's own OpenAPI description.

githubkit's schema package for REST API version 2022-11-28 (the version GitHub serves when a request names
none, as the source's do: https://docs.github.com/en/rest/about-the-rest-api/api-versions) is generated
from github/rest-api-description: one pydantic model per schema and one client method per operation,
whose docstring names the operation (`GET /repos/{owner}/{repo}/issues`), whose keyword arguments are
the operation's query parameters and whose `response_model` is its 200 schema. Every request the source
sends is matched to its operation: each query parameter must be one the operation declares, with a
value of the declared type; every answer must validate against the operation's response model with no
field the schema does not declare.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import pkgutil
import re
from collections import Counter
from functools import cache
from typing import Any, Literal

import pytest
from githubkit.typing import Missing
from githubkit_schemas.v2022_11_28 import models as gh_models
from githubkit_schemas.v2022_11_28 import rest as gh_rest
from pydantic import TypeAdapter, ValidationError
from vendor_recording import RecordingSimulator, model_errors, run_quietly

from apisync.apis.github.source import GitHubSource

REPOS = ("apisync/demo", "apisync/tools")
PAGE = 10  # small pages, so every walk follows Link headers and re-queries
# Each operation the source must reach, with at least this many requests.
EXPECTED = {"repos/get": 1, "issues/list-for-repo": 6, "issues/get": 1, "pulls/list": 4, "pulls/get": 1,
            "issues/list-comments-for-repo": 4, "issues/get-comment": 1}
# Served by the simulator but not walked by the source: checked by a direct GET.
DIRECT = ("/repos/apisync/demo/issues/{number}/comments",)


# --- GitHub's operations, from the schema package ----------------------------------------------

class Operation:
    """One REST operation: its id, path pattern, query parameter types and 200 response model."""

    def __init__(self, op_id: str, template: str, method: Any) -> None:
        self.op_id, self.template, self.method = op_id, template, method
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        self.pattern = re.compile(f"^{pattern}$")

    @property
    def params(self) -> dict[str, Any]:
        names = inspect.signature(self.method).parameters
        return {name: _annotation(p.annotation) for name, p in names.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("headers", "stream", "data")}

    @property
    def response_model(self) -> Any:
        found = re.search(r"response_model=([^\n]+),\n", inspect.getsource(self.method))
        assert found, f"{self.op_id} declares no response model"
        return eval(found.group(1), {}, SchemaNames())  # noqa: S307 - the schema package's own source


class SchemaNames(dict):
    """The names the generated sources use; models load lazily, so they are looked up on demand."""

    def __missing__(self, name: str) -> Any:
        known = {"Missing": Missing, "Literal": Literal, "_dt": datetime}
        if name in known:
            return known[name]
        try:
            return getattr(gh_models, name)
        except AttributeError:
            raise KeyError(name) from None  # a builtin such as `str`


def _annotation(text: Any) -> Any:
    return eval(text, {}, SchemaNames()) if isinstance(text, str) else text  # noqa: S307 - the package's own source


@cache
def operations() -> tuple[Operation, ...]:
    """Every GET operation of the REST API version, from the generated clients' docstrings."""
    found = []
    for info in pkgutil.iter_modules(gh_rest.__path__):
        module = importlib.import_module(f"{gh_rest.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not cls.__name__.endswith("Client") or cls.__module__ != module.__name__:
                continue
            for name, method in inspect.getmembers(cls, inspect.isfunction):
                doc = inspect.getdoc(method) or ""
                head = re.match(r"(\S+)\n\nGET (\S+)\n", doc)
                if head and not name.startswith("async_"):
                    found.append(Operation(head.group(1), head.group(2), method))
    return tuple(found)


def operation_for(path: str) -> Operation | None:
    """The operation a path calls. `/repositories/<id>/...` is where GitHub's own redirects point for a
    repository by id (best-practices-for-using-the-rest-api#follow-redirects) and serves the same
    operations as `/repos/{owner}/{repo}/...`, so it is checked as that."""
    path = re.sub(r"^/repositories/\d+", "/repos/owner/repo", path)
    matches = [op for op in operations() if op.pattern.match(path)]
    # The most specific template wins (/issues/comments over /issues/{issue_number}).
    return min(matches, key=lambda op: op.template.count("{"), default=None)


# --- checks ------------------------------------------------------------------------------------

def request_problems(exchange, op: Operation) -> list[str]:
    """Query parameters the operation does not declare, or values not of the declared type."""
    declared, problems = op.params, []
    for name, value in exchange.params:
        if name not in declared:
            problems.append(f"{name}: not a parameter of {op.op_id} (it has {sorted(declared)})")
            continue
        try:
            TypeAdapter(declared[name]).validate_python(value)
        except ValidationError as error:
            problems.append(f"{name}={value!r}: {error.errors()[0]['msg']}")
    return problems


def answer_problems(exchange, op: Operation) -> list[str]:
    """The answer against the operation's 200 model, or GitHub's error schema (`basic-error`)."""
    if exchange.status in (301, 304):  # no body to check: a redirect followed, or "not modified"
        return []
    model = op.response_model if exchange.status == 200 else gh_models.BasicError
    return model_errors(model, exchange.answer)


def drive(sim: RecordingSimulator) -> list[str]:
    """Every public method of GitHubSource on every collection; returns what raised."""
    notes: list[str] = []
    for collection in GitHubSource.collections:
        source, client = GitHubSource(list(REPOS), page_size=PAGE), sim.client("github")
        start = run_quietly(notes, source.incremental_start, client, collection)
        run_quietly(notes, source.backfill, client, collection, None, None)
        run_quietly(notes, source.backfill, client, collection, None, "2026-01-01")
        sim.sim.clock.advance(120)
        for _ in range(20):
            sim.sim.models["github"].mutate("update", collection)
        if start:
            run_quietly(notes, source.incremental, client, collection, start)
        ids = run_quietly(notes, source.list_ids, client, collection) or []
        missing = [re.sub(r"\d+$", "999999", ids[0])] if ids else []  # an id of the right shape, never created
        for object_id in ids[:2] + missing:
            run_quietly(notes, source.fetch, client, collection, object_id)
    return notes


@pytest.fixture(scope="module")
def recorded():
    sim = RecordingSimulator()
    notes = drive(sim)
    for path in DIRECT:
        issue = sim.get("github", "/repos/apisync/demo/issues", state="all")[0]
        sim.get("github", path.format(number=issue["number"]))
    return sim.exchanges, notes


def test_the_source_reaches_every_operation(recorded):
    exchanges, notes = recorded
    assert not notes, notes
    counts = Counter(op.op_id for e in exchanges if (op := operation_for(e.path)))
    unknown = [e.line() for e in exchanges if operation_for(e.path) is None]
    assert not unknown, f"paths GitHub's API description has no GET operation for: {unknown[:5]}"
    too_few = {op: counts[op] for op, least in EXPECTED.items() if counts[op] < least}
    assert not too_few, f"too few requests: {too_few}; all: {dict(counts)}"


def test_every_request_uses_declared_query_parameters(recorded):
    exchanges, _ = recorded
    problems = [f"{e.line()}: {p}" for e in exchanges if (op := operation_for(e.path))
                for p in request_problems(e, op)]
    assert not problems, "\n".join(problems[:20])


def test_every_answer_validates_against_the_response_model(recorded):
    exchanges, _ = recorded
    assert {e.status for e in exchanges} >= {200, 404}, "want both answers and GitHub's error shape"
    problems = [f"{e.line()}: {p}" for e in exchanges if (op := operation_for(e.path))
                for p in answer_problems(e, op)[:3]]
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize(("drift", "expected"), [
    (lambda issue: issue.pop("events_url"), "events_url: Field required"),
    (lambda issue: issue["user"].pop("node_id"), "user.node_id: Field required"),
    (lambda issue: issue.update(number=str(issue["number"]) + "a"), "number: Input should be a valid integer"),
    (lambda issue: issue.update(repository_id=7000001), "$.repository_id: not in the vendor's schema"),
    (lambda issue: issue["user"].update(avatar="x"), "$.user.avatar: not in the vendor's schema"),
])
def test_the_check_catches_a_drifted_issue(drift, expected):
    """Self-check: a dropped, mistyped or invented field fails the check."""
    sim = RecordingSimulator(objects=3)
    issue = sim.get("github", "/repos/apisync/demo/issues", state="all")[0]
    assert model_errors(gh_models.Issue, issue) == []
    drift(issue)
    assert any(expected in problem for problem in model_errors(gh_models.Issue, issue)), \
        model_errors(gh_models.Issue, issue)


def test_an_undeclared_query_parameter_is_caught():
    """Self-check: a parameter the operation does not have, or a value outside its enum, fails the check."""
    from vendor_recording import Exchange
    op = operation_for("/repos/apisync/demo/pulls")
    bad = Exchange("GET", "/repos/apisync/demo/pulls", [("since", "2026-01-01T00:00:00Z"), ("state", "any")],
                   None, 200, [])
    problems = request_problems(bad, op)
    assert any(p.startswith("since: not a parameter of pulls/list") for p in problems), problems
    assert any(p.startswith("state='any'") for p in problems), problems
