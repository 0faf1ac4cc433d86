"""The asset watchers' trigger under a message burst: the provider's message-queue trigger against the shared one.

`python benchmarks/bench_asset_watchers.py [--burst 300]` starts a one-node Kafka from the devstack jars,
writes a burst to a fresh topic and lets each trigger announce it, driven the way Airflow 3.3's triggerer
drives an asset watcher's trigger:
- message-queue (KafkaMessageQueueTrigger → AwaitMessageTrigger): `run()` until its first event, then
  `cleanup()`, and a fresh instance for the next message (the triggerer restarts a finished watcher);
- shared-stream (apisync_airflow.watchers.KafkaAnnounceTrigger): one subscriber of the triggerer's own
  SharedStreamManager, each event confirmed persisted as the triggerer does once it is in the DB.
Counted per trigger: Kafka consumers created (connections), consumer group joins (partition assignments
received: each is a rebalance of the watchers' group), asset events fired, offsets committed before their
event was persisted, and the wall time to announce the whole burst. Prints one table row per trigger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT / "dev")]
WATCH_CONN = "kafka_watch"


@dataclass
class Counts:
    """What one trigger cost for one burst."""

    consumers: int = 0
    joins: int = 0
    events: int = 0
    commits_before_persist: int = 0
    seconds: float = 0.0


def instrument(counts: Counts, persisted: set[int]) -> None:
    """Count consumers, group joins and early commits through the provider's consumer class."""
    import confluent_kafka
    from airflow.providers.apache.kafka.hooks import consume

    class CountingConsumer(confluent_kafka.Consumer):
        def __init__(self, config: dict) -> None:
            super().__init__(config)
            counts.consumers += 1

        def subscribe(self, topics, **kwargs) -> None:
            def on_assign(consumer, partitions) -> None:
                counts.joins += 1

            super().subscribe(topics, on_assign=on_assign)

        def commit(self, *args, **kwargs):
            message = kwargs.get("message")
            offsets = [message.offset()] if message is not None else [tp.offset - 1 for tp in kwargs["offsets"]]
            counts.commits_before_persist += sum(1 for offset in offsets if offset not in persisted)
            return super().commit(*args, **kwargs)

    consume.Consumer = CountingConsumer


async def message_queue_burst(topic: str, burst: int, counts: Counts, persisted: set[int], idle_s: float) -> None:
    """A finished message-queue trigger is started again, as the triggerer does for an asset watcher."""
    from airflow.providers.apache.kafka.triggers.msg_queue import KafkaMessageQueueTrigger

    classpath, kwargs = KafkaMessageQueueTrigger(topics=[topic], kafka_config_id=WATCH_CONN,
                                                 apply_function="apisync_airflow.watchers.announce").serialize()
    trigger_class = _import(classpath)
    while counts.events < burst:
        trigger = trigger_class(**kwargs)
        try:
            event = await asyncio.wait_for(anext(trigger.run()), timeout=idle_s)
        except TimeoutError:
            break
        finally:
            await trigger.cleanup()
        counts.events += 1
        persisted.add(event.payload["offset"])  # saved only after the trigger has already committed it


async def shared_stream_burst(topic: str, burst: int, counts: Counts, persisted: set[int], idle_s: float) -> None:
    """One subscriber of the triggerer's shared-stream manager, each event confirmed once 'saved'."""
    from airflow.triggers.shared_stream import SharedStreamManager

    from apisync_airflow.watchers import watch_trigger

    manager = SharedStreamManager()
    trigger = watch_trigger(topic, WATCH_CONN)
    key = trigger.shared_stream_key()
    stream = trigger.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=trigger, key=key))
    try:
        while counts.events < burst:
            event = await asyncio.wait_for(anext(stream), timeout=idle_s)
            seq = manager.bind_pending_event(trigger_id=1, key=key)
            counts.events += 1
            persisted.add(event.payload["offset"])
            manager.confirm_persisted([seq])
    finally:
        await manager.unsubscribe(1, key)


def _import(classpath: str):
    from airflow.providers.common.compat.module_loading import import_string

    return import_string(classpath)


def produce_burst(bootstrap: str, topic: str, burst: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for index in range(burst):
        producer.produce(topic, key=f"stripe.customer.cus_{index}", value=b'{"id": "evt"}')
    producer.flush(30)


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic exists
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)


def measure(kind: str, bootstrap: str, burst: int, idle_s: float) -> Counts:
    """Announce one burst on a fresh topic with one trigger kind, in a fresh consumer group."""
    topic = f"bench.watch.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    # earliest: the group starts before the burst in the triggerer; here the burst is already written
    os.environ[f"AIRFLOW_CONN_{WATCH_CONN.upper()}"] = json.dumps({"conn_type": "kafka", "extra": {
        "bootstrap.servers": bootstrap, "group.id": f"bench.{topic}", "isolation.level": "read_committed",
        "auto.offset.reset": "earliest", "enable.auto.commit": False}})
    produce_burst(bootstrap, topic, burst)
    counts, persisted = Counts(), set()
    instrument(counts, persisted)
    run = message_queue_burst if kind == "message-queue" else shared_stream_burst
    started = time.monotonic()
    asyncio.run(run(topic, burst, counts, persisted, idle_s))
    counts.seconds = time.monotonic() - started
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=60.0, help="give up when no event comes for this long")
    args = parser.parse_args()
    from devstack.kafka import KafkaCluster

    with tempfile.TemporaryDirectory(prefix="bench-watchers-") as state:
        cluster = KafkaCluster(Path(state)).start()
        try:
            print(f"burst of {args.burst} messages, one partition")
            print("| trigger | Kafka consumers | group joins | asset events | commits before the event was saved "
                  "| seconds |\n|---|---|---|---|---|---|")
            for kind in ("message-queue", "shared-stream"):
                c = measure(kind, cluster.bootstrap, args.burst, args.idle_s)
                print(f"| {kind} | {c.consumers} | {c.joins} | {c.events} | {c.commits_before_persist} "
                      f"| {c.seconds:.1f} |", flush=True)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
