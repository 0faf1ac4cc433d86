"""The asset watchers' trigger in the triggerer's own shared-stream manager, over a recording Kafka consumer.

What the triggerer does with it is the provider's and Airflow's code, run here as is: one consumer for
every message, no commit before the asset event is confirmed saved, and an event that holds no payload.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from airflow.providers.common.compat.module_loading import import_string
from airflow.triggers.shared_stream import SharedStreamManager

from apisync_airflow.watchers import KafkaAnnounceTrigger, watch_trigger

TOPIC = "stripe.webhooks"
BURST = 12
SMALL_QUEUE = 4  # the triggerer's shared_stream_subscriber_queue_size, a third of the burst


class FakeTopic:
    """One partition holding BURST messages and its committed offset, shared by every consumer."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.committed, self.commits, self.consumers = 0, [], 0
        # A consumer came back for more after SMALL_QUEUE + 1 messages: all of them were broadcast.
        self.past_the_queue = asyncio.Event()

    def consumer(self) -> RecordingConsumer:
        self.consumers += 1
        return RecordingConsumer(self)


class RecordingConsumer:
    """Reads from the committed offset; records commits; seeks like confluent_kafka's Consumer."""

    def __init__(self, topic: FakeTopic) -> None:
        self.topic, self.position = topic, topic.committed

    def poll(self, _timeout: float):
        if self.position > SMALL_QUEUE:
            self.topic.loop.call_soon_threadsafe(self.topic.past_the_queue.set)
        if self.position >= BURST:
            time.sleep(0.01)  # an idle broker answers after a while; keeps this thread from spinning
            return None
        offset, self.position = self.position, self.position + 1
        return SimpleNamespace(topic=lambda: TOPIC, partition=lambda: 0, offset=lambda: offset,
                               value=lambda: b'{"secret": "card"}', key=lambda: b"k", error=lambda: None)

    def commit(self, offsets, asynchronous: bool) -> None:
        for tp in offsets:
            self.topic.committed = tp.offset
            self.topic.commits.append(tp.offset)

    def seek(self, tp) -> None:
        self.position = tp.offset

    def close(self) -> None:
        pass


@pytest.fixture
def kafka(monkeypatch):
    """The provider's consumer hook replaced by one reading the FakeTopic a test puts in `kafka.topic`."""
    from airflow.providers.apache.kafka.triggers import shared_stream

    holder = SimpleNamespace(topic=None)

    class Hook:
        def __init__(self, topics, kafka_config_id) -> None:
            self.topics = topics

        async def aget_connection(self, _conn_id):
            return SimpleNamespace(extra_dejson={"enable.auto.commit": False})

        def get_consumer(self) -> RecordingConsumer:
            return holder.topic.consumer()

    monkeypatch.setattr(shared_stream, "KafkaConsumerHook", Hook)
    return holder


def test_the_trigger_is_rebuilt_from_what_the_dag_processor_stores():
    classpath, kwargs = watch_trigger(TOPIC, "kafka_watch").serialize()
    rebuilt = import_string(classpath)(**kwargs)
    assert isinstance(rebuilt, KafkaAnnounceTrigger)
    assert rebuilt.shared_stream_key() == watch_trigger(TOPIC, "kafka_watch").shared_stream_key()


async def _announce(manager: SharedStreamManager, trigger_id: int, until: int) -> list[dict]:
    """Pull events the way the triggerer does, each confirmed saved, until `until` offsets were announced."""
    trigger = watch_trigger(TOPIC, "kafka_watch")
    key = trigger.shared_stream_key()
    stream = trigger.filter_shared_stream(manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key))
    events = []
    try:
        while len(events) < until:
            events.append((await asyncio.wait_for(anext(stream), timeout=30)).payload)
            manager.confirm_persisted([manager.bind_pending_event(trigger_id=trigger_id, key=key)])
    finally:
        await manager.unsubscribe(trigger_id, key)  # the triggerer's finally; drains pending commits
    return events


async def _burst(kafka) -> tuple[list[dict], list[int], FakeTopic]:
    """Announce a burst; return the events and the commits seen before any event was saved."""
    kafka.topic = topic = FakeTopic()
    manager = SharedStreamManager(ack_timeout=60.0)
    trigger = watch_trigger(TOPIC, "kafka_watch")
    key = trigger.shared_stream_key()
    stream = trigger.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=trigger, key=key))
    events, seqs = [], []
    for _ in range(BURST):
        events.append((await asyncio.wait_for(anext(stream), timeout=30)).payload)
        seqs.append(manager.bind_pending_event(trigger_id=1, key=key))
    early = list(topic.commits)  # every event has left the trigger, none is saved yet
    manager.confirm_persisted(seqs)
    await manager.unsubscribe(1, key)  # moving past the last event resolves it too
    return events, early, topic


def test_a_burst_uses_one_consumer_and_commits_only_after_the_events_are_saved(kafka):
    events, early, topic = asyncio.run(_burst(kafka))
    assert topic.consumers == 1  # one consumer, hence one group join, for the whole burst
    assert events == [{"topic": TOPIC, "partition": 0, "offset": n} for n in range(BURST)]  # no payload
    assert early == []
    assert topic.committed == BURST  # Kafka's next offset to read: past the whole burst


async def _overflow_then_restart(kafka) -> tuple[list[int], FakeTopic]:
    kafka.topic = topic = FakeTopic()
    manager = SharedStreamManager(max_subscriber_queue=SMALL_QUEUE, ack_timeout=60.0)
    trigger = watch_trigger(TOPIC, "kafka_watch")
    key = trigger.shared_stream_key()
    stream = trigger.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=trigger, key=key))
    await asyncio.wait_for(topic.past_the_queue.wait(), timeout=30)  # more broadcast than the queue holds
    with pytest.raises(Exception, match="maxsize"):
        await anext(stream)
    await manager.unsubscribe(1, key)
    committed_after_overflow = topic.committed
    # The triggerer starts the failed trigger again: a new group, from the committed offset.
    again = await _announce(SharedStreamManager(max_subscriber_queue=SMALL_QUEUE * 100, ack_timeout=60.0), 2,
                            until=BURST - committed_after_overflow)
    return [committed_after_overflow, *(event["offset"] for event in again)], topic


def test_a_burst_past_the_subscriber_queue_is_announced_again_never_skipped(kafka):
    committed_after_overflow, *offsets = asyncio.run(_overflow_then_restart(kafka))[0]
    assert committed_after_overflow == 0  # nothing was announced, so nothing was committed
    assert offsets == list(range(BURST))
    assert kafka.topic.committed == BURST
