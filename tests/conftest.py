"""Session services for the integration tier: a real Kafka broker, Redis and the API simulator.

Each starts on first use (unit tests start nothing) on free loopback ports and stops at session end.
Set APISYNC_KAFKA_BOOTSTRAP / APISYNC_REDIS_URL / APISYNC_SIMULATOR_URL to reuse running ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack.kafka import KafkaCluster
from devstack.redis import RedisServer
from devstack.simulator import SimulatorServer


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka_cluster(stack_dir):
    """The KafkaCluster object (None when reusing an external broker); for restart tests."""
    if os.environ.get("APISYNC_KAFKA_BOOTSTRAP"):
        yield None
        return
    cluster = KafkaCluster(stack_dir / "kafka").start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster) -> str:
    return kafka_cluster.bootstrap if kafka_cluster else os.environ["APISYNC_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka_config(kafka_bootstrap) -> dict:
    """Client config as the kafka_default connection's extra JSON would give it."""
    return {"bootstrap.servers": kafka_bootstrap}


@pytest.fixture(scope="session")
def redis_url(stack_dir):
    if os.environ.get("APISYNC_REDIS_URL"):
        yield os.environ["APISYNC_REDIS_URL"]
        return
    server = RedisServer(stack_dir / "redis").start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def simulator_url(stack_dir):
    if os.environ.get("APISYNC_SIMULATOR_URL"):
        yield os.environ["APISYNC_SIMULATOR_URL"]
        return
    server = SimulatorServer(stack_dir / "simulator").start()
    yield server.url
    server.stop()
