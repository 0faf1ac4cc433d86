"""`apisync airflow setup`: everything apisync's DAGs need from an Airflow installation, in one command.

Creates (or updates) the pools, creates the Kafka topics and repairs drifted configs, reaches Redis, and
tests each API's connection with one cheap authenticated call. It prints one line per item, `ok` or
`FAIL` with the reason, and exits 1 if any failed: nothing is left for the scheduler to wait on silently.
It runs where the `airflow` command runs (it writes pools to the metadata DB and reads connections from
every secrets backend, the metadata DB included).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from apisync.registry import APIS
from apisync_airflow.pools import declared_pools

KAFKA_CONN_ID, REDIS_CONN_ID = "kafka_default", "redis_default"


@dataclass(frozen=True, slots=True)
class Check:
    """One item of the setup and how it went."""

    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}: {self.detail}"


def _attempt(what: str, step: Callable[[], str]) -> Check:
    try:
        return Check(True, what, step())
    except Exception as exc:  # every failure becomes its line; the other items still run
        return Check(False, what, f"{type(exc).__name__}: {' '.join(str(exc).split())}")


def create_pools() -> list[Check]:
    """Every pool the DAGs reference, created or set to its declared size (one per registered API pair)."""
    from airflow.models.pool import Pool

    def upsert(pool) -> str:
        Pool.create_or_update_pool(pool.name, pool.slots, pool.description, include_deferred=False)
        return f"{pool.slots} slot{'s' if pool.slots > 1 else ''}"

    return [_attempt(f"pool {pool.name}", lambda pool=pool: upsert(pool)) for pool in declared_pools(tuple(APIS))]


def ensure_topics(timeout: float) -> Check:
    """Create missing topics and repair drifted configs through the kafka_default connection."""
    from apisync.kafka.admin import admin_client, ensure
    from apisync.kafka.topics import declared_topics
    from apisync_airflow.hooks import KafkaConfigHook

    def step() -> str:
        specs = declared_topics()
        report = ensure(admin_client(KafkaConfigHook(KAFKA_CONN_ID).get_config()), specs, timeout)
        if report.unrepaired:
            raise RuntimeError("; ".join(report.describe()))
        return f"{len(specs)} topics declared, {len(report.created)} created, {len(report.altered)} repaired"

    return _attempt(f"kafka topics ({KAFKA_CONN_ID})", step)


def reach_redis() -> Check:
    """PING the Redis of the redis_default connection (rate limits, the version fence)."""
    import redis

    from apisync_airflow.hooks import RedisUrlHook

    def step() -> str:
        redis.Redis.from_url(RedisUrlHook(REDIS_CONN_ID).get_url(), socket_timeout=10).ping()
        return "reachable"

    return _attempt(f"redis ({REDIS_CONN_ID})", step)


def check_api_connection(api: str, required: bool) -> Check:
    """The `<api>_default` connection's test; a missing one fails only when the API was asked for."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from apisync.connections import connection_type
    from apisync_airflow.hooks import ApiConnectionHook

    hook = ApiConnectionHook(api)
    what = f"connection {hook.api_conn_id}"
    try:
        hook.get_connection(hook.api_conn_id)
    except AirflowNotFoundException:
        return Check(not required, what, f"not defined: {api}'s DAGs fail at their first task until it is "
                                         f"(connection type {connection_type(api)})")
    ok, message = hook.test_connection()
    return Check(ok, what, message)


def run_setup(apis: Sequence[str] = (), timeout: float = 30.0, out: TextIO | None = None) -> int:
    """All the checks, one line each; 1 if any failed. `apis`: the APIs whose connections must exist."""
    out = out or sys.stdout
    # Read connections as the api-server does (metadata DB included), not as a task's supervisor would.
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    unknown = sorted(set(apis) - set(APIS))
    if unknown:
        print(f"error: unknown api {', '.join(unknown)}; known: {', '.join(APIS)}", file=out)
        return 2
    checks = [*create_pools(), ensure_topics(timeout), reach_redis(),
              *(check_api_connection(api, api in apis) for api in APIS)]
    for check in checks:
        print(check.line(), file=out, flush=True)
    return 0 if all(check.ok for check in checks) else 1
