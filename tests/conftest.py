"""Session services for the integration tier: a real Kafka broker, Redis and the API simulator.

Each starts on first use (unit tests start nothing) on free loopback ports and stops at session end.
Set APISYNC_KAFKA_BOOTSTRAP / APISYNC_REDIS_URL / APISYNC_SIMULATOR_URL to reuse running ones.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

import apisync.apis  # noqa: F401 - registers every API, as the entry points do (a test may import one module alone)
from api_simulator.config import APIS as SIMULATED_APIS
from devstack.kafka import KafkaCluster
from devstack.process import become_subreaper, kill_descendants
from devstack.redis import RedisServer
from devstack.simulator import SimulatorServer


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """Orphans of the services we start are adopted by this process and ended with the session."""
    become_subreaper()
    yield
    kill_descendants()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka_cluster(stack_dir):
    """The KafkaCluster object (None when reusing an external broker); for restart tests."""
    if os.environ.get("APISYNC_KAFKA_BOOTSTRAP"):
        yield None
        return
    # Start-up waits are generous: a JVM on a loaded 2-core machine can take minutes; a stuck one still fails.
    cluster = KafkaCluster(stack_dir / "kafka").start(timeout=300)
    yield cluster
    gc.collect()  # free clients nobody holds any more, before their broker goes away (less reconnect noise)
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster) -> str:
    return kafka_cluster.bootstrap if kafka_cluster else os.environ["APISYNC_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka_config(kafka_bootstrap) -> dict:
    """Client config as the kafka_default connection's extra JSON would give it."""
    return {"bootstrap.servers": kafka_bootstrap}


def _external_or_local(variable: str, start):
    """The URL in `variable` if set, else a server started now and stopped at session end."""
    if os.environ.get(variable):
        yield os.environ[variable]
        return
    server = start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(stack_dir):
    yield from _external_or_local("APISYNC_REDIS_URL", lambda: RedisServer(stack_dir / "redis").start(timeout=120))


@pytest.fixture(scope="session")
def simulator_url(stack_dir):
    yield from _external_or_local("APISYNC_SIMULATOR_URL",
                                  lambda: SimulatorServer(stack_dir / "simulator").start(timeout=180))


@pytest.fixture
def clean_slate(kafka_config, redis_url, simulator_url):
    """Start a test from nothing: fresh apisync topics, an empty Redis, a re-seeded simulator.

    Topic names are fixed by the message contract, so tests sharing one broker must not see each
    other's messages or checkpoints. Call it as `clean_slate(seed=7, objects=120)`; `topics=False` leaves
    the session broker alone (a test on a broker of its own).
    """
    import httpx
    import redis as redis_lib
    from confluent_kafka.admin import AdminClient

    from apisync.kafka.admin import admin_client, ensure
    from apisync.kafka.topics import declared_topics

    def reset(seed: int = 42, objects: int = 100, topics: bool = True) -> None:
        if topics:
            admin = AdminClient(kafka_config)
            names = [spec.name for spec in declared_topics()]
            existing = [n for n in names if n in admin.list_topics(timeout=10).topics]
            for future in admin.delete_topics(existing, operation_timeout=30).values() if existing else ():
                future.result()
            _wait_for_deletion(admin, existing)
            ensure(admin_client(kafka_config), declared_topics())
        redis_lib.Redis.from_url(redis_url).flushdb()
        httpx.post(f"{simulator_url}/_admin/reset", json={"seed": seed, "objects": objects}, timeout=30)
        httpx.delete(f"{simulator_url}/_admin/faults", timeout=10)
        # The simulator keeps its config across resets: put back what earlier tests changed.
        httpx.post(f"{simulator_url}/_admin/config", json={
            "mutation_rate_per_s": 0,
            "webhooks": {api: {"url": None, "secrets": []} for api in SIMULATED_APIS},
            "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0, "max_attempts": 5},
            "stripe_events_lag_s": 3.0, "stripe_api_version": "2024-06-20",  # Stripe-like defaults
            # A tenth of Salesforce mutations commit 3 s late with their start stamp (the simulator's
            # default); test_salesforce_fidelity stretches one to 5 minutes.
            "salesforce_late_commits": {"share": 0.1, "lag_s": 3}, "salesforce_outbound": {"url": None},
        }, timeout=10).raise_for_status()

    return reset


def _wait_for_deletion(admin, names, timeout: float = 180.0) -> None:
    """Until the broker lists none of `names`; a test must not start on the previous test's topics."""
    import time

    deadline = time.monotonic() + timeout
    while names and set(names) & set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, f"topics not deleted within {timeout:.0f}s: {names}"
        time.sleep(0.2)


def pytest_terminal_summary(terminalreporter):
    """The fault suite's table (make test-faults): one row per scenario."""
    import sys

    helpers = sys.modules.get("sync_helpers")
    rows = getattr(helpers, "FAULT_ROWS", None)
    if not rows:
        return
    header = ("scenario", "injected", "lost", "stale", "versions backwards", "duplicate event ids", "secrets in logs")
    terminalreporter.write_sep("=", "faults survived")
    terminalreporter.write_line("| " + " | ".join(header) + " |")
    terminalreporter.write_line("|" + "---|" * len(header))
    for row in rows:
        terminalreporter.write_line("| " + " | ".join(str(cell) for cell in row) + " |")
