"""Normalizer throughput: observations/s from `stripe.changes` to records, secondary topics and events
(four messages per new customer), in transactions, with the Redis fence on; one process, then two.

The workers start first, on empty topics, and report when the group has handed out every partition;
then they pause fetching, the observations are loaded into `stripe.changes`, and they resume. So the
normalizer is measured catching up with a backlog (after a backfill: the case where its throughput
matters), no rebalance lands inside the measured window, the load generator's CPU stays out of it, and
1 vs 2 processes compare like with like. The rate runs from the first batch's consume call to the last
commit; the rate from the resume is shown beside it (a resumed consumer takes ~0.8 s to fetch again).
Beside them, the same backlog through the normalizer's Kafka work alone (`kafka_alone`): what the
broker and the Kafka clients allow before any of the normalizer's own work.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import orjson
from common import BENCH_DIR, Row, Stack, change_messages, produce_raw, python, ratio, worker_env

OBSERVATIONS = 60_000
PARTITIONS = 6
# Each group is measured this many times and its best run kept, as the producer baseline is: other
# tenants of a shared machine only ever slow a run down, by up to a third here.
REPEATS = 3


@dataclass(slots=True)
class Worker:
    """A normalizer_worker.py child and the last line it printed."""

    process: subprocess.Popen
    last: dict = field(default_factory=lambda: {"assigned": 0, "consumed": 0, "first": 0.0, "last": 0.0, "rss": 0})

    def follow(self) -> None:
        for line in self.process.stdout:
            try:
                self.last = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue


class WorkerGroup:
    """N normalizer processes of one namespace."""

    def __init__(self, stack: Stack, ns: str, count: int) -> None:
        self.stack, self.ns = stack, ns
        self.ledger = ledger = f"bench:{uuid.uuid4().hex[:8]}"
        self.workers = [Worker(subprocess.Popen(
            [python(), str(BENCH_DIR / "normalizer_worker.py"), stack.kafka_bootstrap, stack.redis_url, ns,
             ledger, str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker_env(), text=True))
            for i in range(count)]
        for worker in self.workers:
            threading.Thread(target=worker.follow, daemon=True).start()

    def wait_assigned(self, partitions: int, timeout: float = 90.0) -> None:
        """Until the group owns every input partition (changes + webhooks) and holds it for a second."""
        deadline, stable_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            owned = sum(w.last["assigned"] for w in self.workers)
            alive = all(w.process.poll() is None for w in self.workers)
            if not alive:
                raise RuntimeError("a normalizer worker exited during start-up")
            if owned == 2 * partitions and all(w.last["assigned"] for w in self.workers):
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 1.0:
                    return
            else:
                stable_since = None
            time.sleep(0.1)
        raise RuntimeError("the normalizer group did not get its partitions in time")

    def tell(self, command: str, paused: bool, timeout: float = 30.0) -> None:
        """Send "pause" or "resume" to every worker; with pause, wait until all of them obeyed."""
        for worker in self.workers:
            worker.process.stdin.write(command + "\n")
            worker.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while paused and not all(w.last.get("paused") for w in self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError("the normalizer workers did not pause in time")
            time.sleep(0.05)

    def wait_consumed(self, expected: int, timeout: float) -> tuple[float, float]:
        """Until the workers consumed `expected` observations in all; returns when the first batch began
        and when the last committed."""
        deadline = time.monotonic() + timeout
        while sum(w.last["consumed"] for w in self.workers) < expected:
            if time.monotonic() > deadline or any(w.process.poll() is not None for w in self.workers):
                done = sum(w.last["consumed"] for w in self.workers)
                raise RuntimeError(f"normalizers consumed {done} of {expected} observations")
            time.sleep(0.05)
        return min(w.last["first"] for w in self.workers), max(w.last["last"] for w in self.workers)

    def peak_rss(self) -> int:
        return max(w.last["rss"] for w in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()


@dataclass(frozen=True, slots=True)
class Measured:
    """One measurement of a normalizer group."""

    obs_s: float  # first batch → last commit
    obs_s_from_resume: float
    peak_rss: int  # of the largest worker
    ledger: str  # its ledger's key prefix


def measure(stack: Stack, processes: int, observations: int, seed: int = 5) -> Measured:
    """`processes` normalizers catching up with a backlog of `observations`."""
    ns = stack.namespace(partitions=PARTITIONS)
    group = WorkerGroup(stack, ns, processes)
    try:
        group.wait_assigned(PARTITIONS)
        group.tell("pause", paused=True)
        produce_raw(stack.kafka_config, f"{ns}stripe.changes", change_messages(observations, seed=seed))
        resumed = time.time()
        group.tell("resume", paused=False)
        first, last = group.wait_consumed(observations, timeout=60 + observations / 500)
        return Measured(observations / (last - first), observations / (last - resumed), group.peak_rss(),
                        group.ledger)
    finally:
        group.stop()
        stack.drop(ns)


def kafka_alone(stack: Stack, observations: int, seed: int = 5) -> float:
    """Observations/s of the normalizer's Kafka work alone: the production consumer and transactional
    producer settings, the backlog read, four ready-made messages per observation through
    `Producer.send_encoded`, batches of DEFAULT_BATCH_SIZE each committed with its offsets; no parsing,
    no fence, no events. The ceiling the normalizer rows are measured against."""
    from confluent_kafka import Consumer, TopicPartition

    from apisync.kafka.normalizer_clients import consumer_config, producer_config
    from apisync.kafka.producer import Producer
    from apisync.normalizer import DEFAULT_BATCH_SIZE

    ns = stack.namespace(partitions=PARTITIONS)
    produce_raw(stack.kafka_config, f"{ns}stripe.changes", change_messages(observations, seed=seed))
    consumer = Consumer(consumer_config("stripe", stack.kafka_config, "alone", ns))
    producer = Producer(producer_config("stripe", stack.kafka_config, "alone", ns))
    outputs = [f"{ns}stripe.records", f"{ns}stripe.customer", f"{ns}stripe.events", f"{ns}stripe.customer.created"]
    consumer.subscribe([f"{ns}stripe.changes"])
    done, started = 0, None
    try:
        while done < observations:
            # what is fetched already, else the first to arrive, as the normalizer takes its batches
            # (consume(n, timeout) waits for all n: a short last batch would wait out the timeout)
            fetched = consumer.consume(DEFAULT_BATCH_SIZE, 0) or consumer.consume(1, 1.0)
            messages = [m for m in fetched if m.error() is None]
            if not messages:
                continue
            started = started or time.perf_counter()
            with producer.transaction():
                producer.send_encoded((topic, m.key(), m.value(), None) for m in messages for topic in outputs)
                last = {(m.topic(), m.partition()): m.offset() for m in messages}
                producer.send_offsets_to_transaction([TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                                                     consumer.consumer_group_metadata())
            done += len(messages)
        return observations / (time.perf_counter() - started)
    finally:
        consumer.close()
        producer.close()
        stack.drop(ns)


def ledger_bytes_per_key(stack: Stack, ledger: str, sample: int = 500) -> float:
    """Redis MEMORY USAGE (key, value and overhead) averaged over a sample of one ledger's keys."""
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    keys = []
    for key in client.scan_iter(match=f"{ledger}:stripe.*", count=1000):
        keys.append(key)
        if len(keys) >= sample:
            break
    return sum(client.memory_usage(key, samples=0) for key in keys) / max(1, len(keys))


def run(stack: Stack, observations: int = OBSERVATIONS) -> list[Row]:
    one = max((measure(stack, 1, observations) for _ in range(REPEATS)), key=lambda m: m.obs_s)
    per_key = ledger_bytes_per_key(stack, one.ledger)
    two = max((measure(stack, 2, observations) for _ in range(REPEATS)), key=lambda m: m.obs_s)
    alone = max(kafka_alone(stack, observations) for _ in range(REPEATS))
    base = stack.baseline_msgs_s
    object_size = sum(len(v) for _k, v in change_messages(200, seed=5)) / 200
    return [
        Row("normalizer, 1 process",
            f"{observations:,} observations backlogged, 4 msgs each, fence on, best of {REPEATS}",
            f"{one.obs_s:,.0f} obs/s", ratio(one.obs_s, stack), ">= 0.15x",
            one.obs_s / base >= 0.15 if base else None, f"{one.obs_s_from_resume:,.0f} obs/s from the resume"),
        Row("normalizer, 2 processes",
            f"{observations:,} observations backlogged, {PARTITIONS} partitions, best of {REPEATS}",
            f"{two.obs_s:,.0f} obs/s", f"{two.obs_s / one.obs_s:.2f}x of 1 process", ">= 1.6x of 1",
            two.obs_s / one.obs_s >= 1.6, f"{two.obs_s_from_resume:,.0f} obs/s from the resume"),
        Row("normalizer's Kafka work alone",
            f"{observations:,} observations, 4 ready-made msgs each, no parsing or fence, best of {REPEATS}",
            f"{alone:,.0f} obs/s", ratio(alone, stack), "", None, "the ceiling of the rows above"),
        Row("ledger (Redis)", "MEMORY USAGE per ledger key, 500 keys", f"{per_key:,.0f} B per key",
            f"observation {object_size:.0f} B", "compact", None),
    ]
