"""The asset watchers' message function: what an input message tells the scheduler.

Runs in the triggerer (the Kafka provider's AwaitMessageTrigger imports it by name) for every message on
`<api>.changes` and `<api>.webhooks`. Each one starts, or queues behind the running one, a `<api>_normalize`
run; the event says where the message is, never what it holds (payloads stay in Kafka, out of the
metadata DB).
"""

from __future__ import annotations

from typing import Any


def announce(message: Any) -> dict[str, Any]:
    """A consumed message → the asset event's payload: topic, partition and offset (always truthy)."""
    return {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()}
