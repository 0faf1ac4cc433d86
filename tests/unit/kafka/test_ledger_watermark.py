"""The ledger's "was this topic ever written?" probe waits out a partition's leader election."""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from apisync.ledger import _high_watermark


class Answers:
    """A consumer whose get_watermark_offsets raises the given errors first, then answers (0, high)."""

    def __init__(self, errors, high=7):
        self.errors, self.high, self.calls = list(errors), high, 0

    def get_watermark_offsets(self, tp, timeout):
        self.calls += 1
        if self.errors:
            raise KafkaException(KafkaError(self.errors.pop(0)))
        return 0, self.high


def test_a_partition_without_a_leader_yet_is_asked_again():
    consumer = Answers([KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE])
    assert _high_watermark(consumer, TopicPartition("stripe.records", 0)) == 7
    assert consumer.calls == 3


def test_other_errors_and_an_election_that_never_ends_are_raised():
    with pytest.raises(KafkaException):
        _high_watermark(Answers([KafkaError.TOPIC_AUTHORIZATION_FAILED]), TopicPartition("stripe.records", 0))
    endless = Answers([KafkaError.NOT_LEADER_FOR_PARTITION] * 1000)
    with pytest.raises(KafkaException):
        _high_watermark(endless, TopicPartition("stripe.records", 0), patience_s=0.5)
    assert 1 < endless.calls < 1000
