"""The asset watchers' trigger: one shared Kafka consumer per input topic, committed after the event is saved.

Runs in the triggerer for every message on `<api>.changes` and `<api>.webhooks`. Each message starts, or
queues behind the running one, a `<api>_normalize` run. The provider's shared-stream trigger keeps one
consumer (one group member) open for as long as the watcher lives and commits a message's offset only once
its asset event is in the metadata DB, so a triggerer crash re-announces instead of losing the message. The
event says where the message is, never what it holds (payloads stay in Kafka, out of the metadata DB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.apache.kafka.triggers.shared_stream import (
    KafkaBrokerPayload,
    KafkaSharedStreamProducer,
    KafkaSharedStreamTrigger,
)


def announce(message: Any) -> dict[str, Any]:
    """A consumed message → the asset event's payload: topic, partition and offset (always truthy)."""
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}


def where(payload: KafkaBrokerPayload) -> dict[str, Any]:
    """The shared consumer's bookkeeping for one message → the same payload as `announce`."""
    return {"topic": payload.topic, "partition": payload.partition, "offset": payload.offset}


class KafkaAnnouncingProducer(KafkaSharedStreamProducer):
    """The provider's shared consumer, broadcasting where each message is instead of its value."""

    async def open_stream(self) -> AsyncIterator[tuple[dict[str, Any], KafkaBrokerPayload]]:
        """Each message as (its coordinates, the provider's payload that drives the commit)."""
        async for _value, payload in super().open_stream():
            yield where(payload), payload


class KafkaAnnounceTrigger(KafkaSharedStreamTrigger):
    """Fires one event per message holding its topic, partition and offset; tombstones included."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        # The provider's serialize names its own class; the triggerer must rebuild this one.
        _, kwargs = super().serialize()
        return f"{type(self).__module__}.{type(self).__qualname__}", kwargs

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> KafkaAnnouncingProducer:
        """The shared consumer the triggerer opens once per (topics, connection)."""
        return KafkaAnnouncingProducer(topics=kwargs["topics"], kafka_config_id=kwargs["kafka_config_id"],
                                       poll_timeout=kwargs["poll_timeout"], dlq_topic=kwargs.get("dlq_topic"))


def watch_trigger(topic: str, kafka_config_id: str) -> KafkaAnnounceTrigger:
    """The trigger an input topic's AssetWatcher runs (the connection must set enable.auto.commit=false)."""
    return KafkaAnnounceTrigger(topics=[topic], kafka_config_id=kafka_config_id)
