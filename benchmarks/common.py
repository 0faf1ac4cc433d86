"""What every benchmark shares: the services (started here, on free ports), payloads and the table's rows.

`Stack.start()` brings up Kafka from the devstack jars, Redis and the API simulator (10,000 objects per
collection, seeded while Kafka boots) under a temporary state folder, exactly as tests/conftest.py does,
and stops them all at the end. Set BENCH_REUSE=1 with APISYNC_KAFKA_BOOTSTRAP / APISYNC_REDIS_URL /
APISYNC_SIMULATOR_URL exported to run one benchmark against services already up (development only).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

import apisync.apis  # noqa: F401 - registers every API, as the entry points do, in every benchmark process

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
STRIPE_TOKEN = "sk_test_apisync"
SIM_OBJECTS = 10_000  # Stripe customers for the backfill paths (the simulator seeds this many per collection)


@dataclass(slots=True)
class Row:
    """One line of the table: a measured value, its ratio to the baseline (if any) and the target."""

    path: str
    measure: str
    value: str
    ratio: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass(slots=True)
class Stack:
    """Kafka, Redis and the simulator for one bench run."""

    kafka_bootstrap: str
    redis_url: str
    simulator_url: str
    stop: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    baseline_msgs_s: float = 0.0  # set by the producer baseline; every ratio divides by it

    @property
    def kafka_config(self) -> dict:
        return {"bootstrap.servers": self.kafka_bootstrap}

    @classmethod
    def start(cls) -> Stack:
        """Our own services under a temporary folder (or the exported ones with BENCH_REUSE=1)."""
        if os.environ.get("BENCH_REUSE"):
            stack = cls(os.environ["APISYNC_KAFKA_BOOTSTRAP"], os.environ["APISYNC_REDIS_URL"],
                        os.environ["APISYNC_SIMULATOR_URL"])
            httpx.post(f"{stack.simulator_url}/_admin/reset", json={"seed": 7, "objects": SIM_OBJECTS},
                       timeout=300).raise_for_status()
            return stack
        from devstack.kafka import KafkaCluster
        from devstack.process import become_subreaper, kill_descendants
        from devstack.redis import RedisServer
        from devstack.simulator import SimulatorServer

        become_subreaper()
        stop = contextlib.ExitStack()
        state = Path(tempfile.mkdtemp(prefix="apisync-bench-"))
        stop.callback(shutil.rmtree, state, True)
        stop.callback(kill_descendants)
        # Seeding 10,000 objects per collection takes the simulator ~20 s: overlap it with Kafka's start.
        # Started here, not in a helper thread: devstack's children die with the thread that spawned
        # them. Seeding 10,000 objects per collection takes ~20 s, so that runs while Kafka boots.
        simulator = SimulatorServer(state / "simulator", extra_args=["--objects", "0"]).start()
        stop.callback(simulator.stop)
        failed: list[BaseException] = []
        seeding = threading.Thread(target=_seed, args=(simulator.url, failed))
        seeding.start()
        try:
            kafka = KafkaCluster(state / "kafka").start()
            stop.callback(kafka.stop)
            redis = RedisServer(state / "redis").start()
            stop.callback(redis.stop)
        finally:
            seeding.join()
        if failed:
            stop.close()
            raise SystemExit(f"the API simulator could not seed its objects: {failed[0]}")
        return cls(kafka.bootstrap, redis.url, simulator.url, stop)

    def close(self) -> None:
        self.stop.close()

    def ensure_topics(self) -> None:
        """The production topic layout (6 partitions), as `python -m apisync topics ensure` creates it."""
        from apisync.kafka.admin import admin_client, ensure
        from apisync.kafka.topics import declared_topics

        ensure(admin_client(self.kafka_config), declared_topics())

    def namespace(self, api: str = "stripe", partitions: int = 6) -> str:
        """Fresh copies of one api's topics under a unique prefix (as the normalizer tests do)."""
        from apisync.kafka.admin import admin_client, ensure
        from apisync.kafka.topics import Layout, TopicSpec, api_topics
        from apisync.registry import rule_event_types

        ns = f"b{uuid.uuid4().hex[:8]}."
        specs = [TopicSpec(ns + s.name, s.partitions, s.replication_factor, s.config)
                 for s in api_topics(api, Layout(partitions=partitions), rule_event_types(api))]
        ensure(admin_client(self.kafka_config), specs)
        self._wait_for_leaders([s.name for s in specs])
        return ns

    def drop(self, ns: str) -> None:
        """Delete a namespace's topics (a single small broker slows down with thousands of partitions)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.kafka_config)
        names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(ns)]
        for future in (admin.delete_topics(names, operation_timeout=30).values() if names else ()):
            future.result()

    def _wait_for_leaders(self, names: list[str], timeout: float = 30.0) -> None:
        """New topics answer NOT_LEADER for a moment after creation (the normalizer's start-up asks the
        records topic's watermarks): wait until every partition of every new topic answers."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer({**self.kafka_config, "group.id": f"bench-probe-{uuid.uuid4().hex[:6]}"})
        deadline = time.monotonic() + timeout
        try:
            pending = [TopicPartition(n, p) for n in names
                       for p in consumer.list_topics(n, timeout=10).topics[n].partitions]
            while pending and time.monotonic() < deadline:
                try:
                    consumer.get_watermark_offsets(pending[-1], timeout=5)
                    pending.pop()
                except KafkaException:
                    time.sleep(0.2)
        finally:
            consumer.close()
        if pending:
            raise RuntimeError("new benchmark topics got no partition leaders in time")

    def simulator_config(self, patch: dict) -> None:
        httpx.post(f"{self.simulator_url}/_admin/config", json=patch, timeout=10).raise_for_status()

    def simulator_requests(self, api: str = "stripe") -> int:
        """Requests the simulator answered for one api so far (every status)."""
        stats = httpx.get(f"{self.simulator_url}/_admin/stats", timeout=10).json()["requests"]
        return sum(stats.get(api, {}).values())


def _seed(url: str, failed: list) -> None:
    try:
        httpx.post(f"{url}/_admin/reset", json={"seed": 7, "objects": SIM_OBJECTS}, timeout=600).raise_for_status()
    except Exception as exc:  # reported by the caller, on its thread
        failed.append(exc)


def peak_rss() -> int:
    """This process's peak RSS in bytes. VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's
    RSS at fork time (the bench process is large), VmHWM belongs to the program after exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
          "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango")


def customer(index: int, rng: random.Random, created: int) -> dict:
    """A Stripe customer shaped like the simulator's (about 480 B of JSON, varied so lz4 cannot cheat)."""
    first, last = rng.choice(_WORDS).title(), rng.choice(_WORDS).title()
    return {"id": f"cus_{index:014d}", "object": "customer", "address": None, "balance": rng.randrange(0, 10_000),
            "created": created, "currency": "usd", "default_source": None, "delinquent": rng.random() < 0.1,
            "description": " ".join(rng.choice(_WORDS) for _ in range(3)),
            "email": f"{first.lower()}.{last.lower()}{rng.randrange(10_000)}@example.com",
            "invoice_prefix": uuid.UUID(int=rng.getrandbits(128)).hex[:8].upper(), "livemode": False,
            "metadata": {"segment": rng.choice(_WORDS)}, "name": f"{first} {last}", "phone": None,
            "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None}


def change_value(index: int, rng: random.Random, version_ms: int) -> bytes:
    """One `stripe.changes` message value (~600 B), as the backfill writes it."""
    data = customer(index, rng, version_ms // 1000 - index)
    return orjson.dumps({"key": f"stripe.customer.{data['id']}", "api": "stripe", "collection": "customer",
                         "id": data["id"], "version": version_ms, "updated_at": "2026-11-26T14:53:32.000Z",
                         "source": "backfill", "synced_at": "2026-11-26T14:53:32.123Z", "deleted": False,
                         "data": data})


def change_messages(count: int, seed: int = 1, start: int = 0) -> Iterator[tuple[str, bytes]]:
    """(key, value) of `count` distinct customers' observations."""
    rng = random.Random(seed)
    version = 1_795_704_812_000
    for index in range(start, start + count):
        yield f"stripe.customer.cus_{index:014d}", change_value(index, rng, version)


def produce_raw(config: dict, topic: str, messages: Iterable[tuple[str, bytes]], flush_s: float = 60) -> int:
    """Produce with the plain idempotent client (the baseline, and the fast way to load a topic); returns how many."""
    from confluent_kafka import Producer

    producer = Producer({**config, "enable.idempotence": True, "acks": "all", "linger.ms": 20,
                         "compression.type": "lz4", "partitioner": "murmur2_random"})
    count = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        count += 1
    if producer.flush(flush_s):
        raise RuntimeError(f"messages to {topic} were not all acknowledged")
    return count


def worker_env() -> dict[str, str]:
    """Environment for a benchmark's child process: the same apisync as this process (so a run with
    PYTHONPATH pointing at another checkout measures that code everywhere), and benchmarks/."""
    import apisync

    include = Path(apisync.__file__).resolve().parents[1]
    parts = [str(include), str(ROOT / "plugins"), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in parts if p)}


def python() -> str:
    return sys.executable


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def ratio(value: float, stack: Stack) -> str:
    return f"{value / stack.baseline_msgs_s:.3f}x" if stack.baseline_msgs_s else ""


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result
