"""Fixtures for the Airflow-layer unit tests: connections as env vars and a stand-in sync engine.

The stand-in has exactly the documented engine API (apisync.sync / apisync.settings); it records what
the operators pass and returns what a test scripts, so operators are tested without services.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from apisync.sync.audit import AuditOptions  # the real options: operators validate through them

CONNECTIONS = {
    "kafka_default": {"conn_type": "kafka", "extra": {"bootstrap.servers": "127.0.0.1:19092"}},
    "redis_default": {"conn_type": "redis", "host": "127.0.0.1", "port": 16379, "extra": {"db": 3}},
    "stripe_default": {"conn_type": "http", "host": "http://127.0.0.1:18765", "password": "sk_test_unit",
                       "extra": {"rate_per_s": 20, "burst": 3, "webhook_secrets": ["whsec_a"]}},
    "github_default": {"conn_type": "github", "host": "http://127.0.0.1:18765", "password": "ghp_unit",
                       "extra": {"repos": ["apisync/demo"]}},
}


@pytest.fixture
def connections(monkeypatch):
    """The devstack connections, as AIRFLOW_CONN_* JSON env vars (how the Task SDK finds them)."""
    for name, conn in CONNECTIONS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))
    return CONNECTIONS


@dataclass(frozen=True, slots=True)
class FakeProgress:
    pages: int
    records: int
    records_per_s: float
    cursor: Any
    rate_limit_wait_s: float
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class FakeSummary:
    values: dict

    def as_dict(self) -> dict:
        return dict(self.values)


class BackfillNotDone(Exception):
    """Stand-in for apisync.sync.BackfillNotDone."""


@dataclass
class FakeEngine:
    """Records calls; `script[job]` is a callable(settings, collection, **kw) or an exception to raise."""

    calls: list = field(default_factory=list)
    script: dict = field(default_factory=dict)
    # The engine's types, for tests to build progress reports, summaries and the skip signal.
    Progress = FakeProgress
    Summary = FakeSummary
    BackfillNotDone = BackfillNotDone

    def _run(self, job: str, settings, collection, **kwargs):
        self.calls.append((job, settings, collection, kwargs))
        action = self.script.get(job)
        if isinstance(action, BaseException):
            raise action
        if action is not None:
            return action(settings, collection, **kwargs)
        return FakeSummary({"api": settings.api.api, "collection": collection, "job": job, "pages": 0,
                            "records": 0})


@pytest.fixture
def engine(monkeypatch) -> FakeEngine:
    """Install the stand-in engine as apisync.sync (the real settings and audit options stay)."""
    fake = FakeEngine()
    sync = types.ModuleType("apisync.sync")
    sync.BackfillNotDone = BackfillNotDone
    sync.RunSummary, sync.Progress = FakeSummary, FakeProgress
    sync.run_backfill = lambda settings, collection, **kw: fake._run("backfill", settings, collection, **kw)
    sync.run_incremental = lambda settings, collection, **kw: fake._run("incremental", settings, collection, **kw)
    sync.run_reconcile = lambda settings, collection, **kw: fake._run("reconcile", settings, collection, **kw)
    sync.AuditOptions = AuditOptions
    sync.run_audit = lambda settings, collection, options, **kw: fake._run("audit", settings, collection,
                                                                           options=options, **kw)
    monkeypatch.setitem(sys.modules, "apisync.sync", sync)
    return fake
