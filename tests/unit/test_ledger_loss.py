"""Ledger loss detection without services: the names the rebuild reads, the script's whole-call answers,
where the normalizer learns Kafka's committed offsets, and how long tombstones outlive a stale observation."""

import pytest
from confluent_kafka import TopicPartition

from apisync.fence import FencedOut, LedgerLost, _raise_whole_answer, _verdicts
from apisync.kafka.groups import normalizer_group
from apisync.kafka.normalizer_clients import consumer_config
from apisync.kafka.topics import DAY_MS, Layout, api_topics
from apisync.ledger import input_topics
from apisync.ledger_states import StateCodec
from apisync.normalizer import Normalizer
from apisync.normalizer.batch import _judged_ends

STRIPE_WEBHOOK_RETRY_DAYS = 3  # https://docs.stripe.com/webhooks#retries: "for up to three days"


class FakeConsumer:
    """Records what the normalizer subscribes to and how often it asks the broker for committed offsets."""

    def __init__(self, committed: dict[tuple[str, int], int]) -> None:
        self.committed_offsets, self.asked, self.topics = committed, [], []

    def subscribe(self, topics, on_assign=None, on_revoke=None):
        self.topics = list(topics)

    def committed(self, partitions, timeout=None):
        self.asked.append(sorted((tp.topic, tp.partition) for tp in partitions))
        return [TopicPartition(tp.topic, tp.partition, self.committed_offsets.get((tp.topic, tp.partition), -1001))
                for tp in partitions]


class FakeFence:
    def claim(self, tps):
        return dict.fromkeys(tps, 1)


def normalizer_with(consumer: FakeConsumer) -> Normalizer:
    return Normalizer("stripe", consumer, producer=None, fence=FakeFence(), namespace="t1.")


def test_the_rebuild_reads_the_offsets_of_the_group_and_topics_the_normalizer_uses():
    consumer = FakeConsumer({})
    normalizer_with(consumer)
    assert normalizer_group("stripe", "t1.") == consumer_config("stripe", {}, "0", "t1.")["group.id"]
    assert input_topics("stripe", "t1.") == consumer.topics


@pytest.mark.parametrize(("reply", "raised", "says"), [
    (["lost", "no generation marker"], LedgerLost, "no generation marker"),
    (["lost", "judged stripe.changes:2 below its committed offset"], LedgerLost, "stripe.changes:2"),
    (["lost", "ledger key apisync:ledger:stripe.customer.cus_1 is missing"], LedgerLost, "cus_1"),
    (["fenced"], FencedOut, "newer owner epoch"),
])
def test_a_whole_call_answer_is_raised_never_read_as_verdicts(reply, raised, says):
    with pytest.raises(raised, match=says):
        _raise_whole_answer(reply)
    with pytest.raises(raised):
        _verdicts(reply, StateCodec(()))


@pytest.mark.parametrize("reply", [[["accepted"]], [["stale", "~abc", 0, "10"]], {}, None])
def test_verdicts_and_empty_answers_are_not_whole_call_answers(reply):
    _raise_whole_answer(reply)


def test_committed_offsets_come_from_the_broker_once_per_assignment_then_from_own_commits():
    consumer = FakeConsumer({("t1.stripe.changes", 0): 40})
    normalizer = normalizer_with(consumer)
    spans = {("t1.stripe.changes", 0): (40, 49), ("t1.stripe.webhooks", 0): (3, 5)}
    assert normalizer._committed_offsets(spans) == {"t1.stripe.changes:0": 40, "t1.stripe.webhooks:0": 0}
    normalizer._kafka_committed.update(_judged_ends(spans))  # what _transact does once the batch committed
    later = {("t1.stripe.changes", 0): (50, 60)}
    assert normalizer._committed_offsets(later) == {"t1.stripe.changes:0": 50}
    assert len(consumer.asked) == 1  # a round trip per batch would wait for the last commit's markers
    normalizer._on_assign(consumer, [TopicPartition("t1.stripe.changes", 0)])  # another owner may have moved it
    assert normalizer._committed_offsets(later) == {"t1.stripe.changes:0": 40}
    assert consumer.asked[-1] == [("t1.stripe.changes", 0)]


def test_judged_ends_are_the_offsets_the_batch_commits():
    assert _judged_ends({("a", 0): (5, 9), ("b", 2): (0, 0)}) == {"a:0": 10, "b:2": 1}


def test_a_tombstone_outlives_every_stale_observation_of_its_object():
    specs = {spec.name: spec for spec in api_topics("stripe", Layout())}
    longest_wait = max(int(specs[f"stripe.{kind}"].config["retention.ms"]) for kind in ("changes", "webhooks"))
    tombstone_life = int(specs["stripe.records"].config["delete.retention.ms"])
    assert tombstone_life >= longest_wait + STRIPE_WEBHOOK_RETRY_DAYS * DAY_MS
