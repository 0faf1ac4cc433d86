"""A re-fetch that fails transiently defers its object: written back to its input topic, the batch commits past it."""

import dataclasses

import orjson
import pytest
from test_refetch_planning import (
    API,
    CHANGES,
    WEBHOOKS,
    Failing,
    FakeConsumer,
    FakeFence,
    FakeProducer,
    Msg,
    hubspot_event,
    records,
)

from apisync.http import RetriableError
from apisync.normalizer import DEFER_WAIT_S, Normalizer
from apisync.normalizer.deferrals import _NothingDue
from apisync.refetch_outcomes import DeferPolicy, Deferral

NOW = 1_700_000_000.0
POLICY = DeferPolicy(first_delay_s=10, max_delay_s=600, give_up_s=3_600)
DOWN = RetriableError(API, "GET", "/crm/v3/objects/contacts/7", 503, "Service Unavailable")


class KeyedMsg(Msg):
    def __init__(self, topic, partition, offset, key, value, headers):
        super().__init__(topic, partition, offset, value)
        self._k, self._h = key, headers

    def key(self):
        return self._k

    def headers(self):
        return self._h


class Topics(FakeConsumer):
    """The input topics: what the normalizer writes back to them is read again, after its commit."""

    def put(self, topic, items, partition=0):
        log = self.log.setdefault((topic, partition), [])
        log += [KeyedMsg(topic, partition, len(log) + i, key, value, headers)
                for i, (key, value, headers) in enumerate(items)]
        self.pos.setdefault((topic, partition), 0)

    def written_back(self, producer):
        """Append to their topics the messages the producer wrote back since the last call."""
        if not hasattr(self, "seen"):
            self.seen = 0
        back = [(t, k, v, h) for t, k, v, h in producer.sent if t in (WEBHOOKS, CHANGES)]
        for topic, key, value, headers in back[self.seen:]:
            self.put(topic, [(key, value, headers)])
        self.seen = len(back)


class Wall:
    """The wall clock deferrals are due by; sleeping advances it."""

    def __init__(self):
        self.now, self.slept = NOW, []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def thin(object_id, occurred):
    return (f"hubspot.contact.{object_id}".encode(), hubspot_event(object_id, occurred), [])


def change(object_id, version, data):
    return (f"hubspot.contact.{object_id}".encode(),
            orjson.dumps({"api": API, "collection": "contact", "id": str(object_id), "version": version,
                          "source": "poll", "synced_at": "", "data": data}), [])


def setup(bad=("7",), batch_size=5000, policy=POLICY):
    topics, fence, wall, box = Topics([]), FakeFence(), Wall(), []
    producer = FakeProducer(fence, topics, [])
    box.append(producer)
    refetch = Failing(box, DOWN, set(bad))
    norm = Normalizer(API, topics, producer, fence, refetch=refetch, batch_size=batch_size, defer_policy=policy,
                      wall_clock=lambda: wall.now, sleep=wall.sleep)
    return norm, topics, producer, refetch, wall


def step(norm, topics, producer, batch_size=5000):
    """One batch, if there is anything due to read; what it wrote back is read again later."""
    messages = topics.poll_all(batch_size)
    if not messages:
        return False
    try:
        norm.process(messages)
    except _NothingDue:  # as run() does: nothing due yet, read again later
        return False
    topics.written_back(producer)
    return True


def cycle(norm, topics, producer, batch_size=5000, limit=50):
    """Process batches until nothing is left to read."""
    for _ in range(limit):
        if not step(norm, topics, producer, batch_size):
            return
    raise AssertionError("did not settle")


def dead_letters(producer):
    return [orjson.loads(v) for t, _k, v, _h in producer.sent if t == f"{API}.dlq"]


def written_back(producer, topic=WEBHOOKS):
    return [(k.decode(), orjson.loads(v), Deferral.of(h)) for t, k, v, h in producer.sent if t == topic]


def test_a_transient_failure_defers_its_object_and_the_batch_commits_past_it():
    norm, topics, producer, _refetch, _wall = setup()
    topics.put(WEBHOOKS, [thin(7, 500), thin(8, 500), thin(7, 900), thin(9, 500)])
    norm.process(topics.poll_all(10))
    assert producer.commits == 1 and producer.aborts == 0
    assert set(records(producer)) == {"hubspot.contact.8", "hubspot.contact.9"}
    assert topics.committed_at[(WEBHOOKS, 0)] == 4  # past the deferred object's messages
    # one message stands for the key's two: the newest, due after the first delay, with why
    [(key, value, deferral)] = written_back(producer)
    assert key == "hubspot.contact.7" and value["occurredAt"] == 900
    assert deferral == Deferral(1, NOW, f"re-fetch failed transiently: {DOWN}", NOW + 10)
    assert dead_letters(producer) == []


def test_a_deferred_object_lands_once_the_api_answers_again_and_nothing_goes_to_the_dlq():
    norm, topics, producer, refetch, wall = setup()
    topics.put(WEBHOOKS, [thin(7, 500), thin(8, 500)])
    norm.process(topics.poll_all(10))
    topics.written_back(producer)
    refetch.bad.clear()  # the API answers again
    wall.now += 10
    cycle(norm, topics, producer)
    assert set(records(producer)) == {"hubspot.contact.7", "hubspot.contact.8"}
    assert dead_letters(producer) == [] and producer.aborts == 0


def test_a_deferral_read_before_it_is_due_is_written_back_unchanged_without_a_request_beside_other_work():
    norm, topics, producer, refetch, wall = setup()
    topics.put(WEBHOOKS, [thin(7, 500)])
    norm.process(topics.poll_all(10))
    topics.written_back(producer)
    topics.put(WEBHOOKS, [thin(8, 500)])  # other work behind the deferral
    calls, wall.now = len(refetch.calls), NOW + 3
    norm.process(topics.poll_all(10))
    assert [ids for ids, _open in refetch.calls[calls:]] == [["8"]] and wall.slept == []
    assert [d for _k, _v, d in written_back(producer)] == [Deferral(1, NOW, f"re-fetch failed transiently: {DOWN}",
                                                                    NOW + 10)] * 2
    assert topics.committed_at[(WEBHOOKS, 0)] == 3


def test_a_batch_of_only_early_deferrals_waits_until_the_first_is_due_then_reads_it():
    norm, topics, producer, refetch, wall = setup()
    topics.put(WEBHOOKS, [thin(7, 500)])
    norm.process(topics.poll_all(10))
    topics.written_back(producer)
    refetch.bad.clear()
    wall.now = NOW + 7  # due in 3 s: within DEFER_WAIT_S
    norm.process(topics.poll_all(10))
    assert wall.slept == [pytest.approx(3)] and set(records(producer)) == {"hubspot.contact.7"}


def test_a_batch_of_only_deferrals_due_later_waits_a_bounded_time_then_is_read_again_without_writing():
    norm, topics, producer, refetch, wall = setup(policy=DeferPolicy(first_delay_s=60, give_up_s=3_600))
    topics.put(WEBHOOKS, [thin(7, 500)])
    norm.process(topics.poll_all(10))
    topics.written_back(producer)
    sent, calls, commits = len(producer.sent), len(refetch.calls), producer.commits
    with pytest.raises(_NothingDue):
        norm.process(topics.poll_all(10))
    assert wall.slept == [DEFER_WAIT_S]  # no spin, and no wait past the bound
    assert (len(producer.sent), len(refetch.calls), producer.commits) == (sent, calls, commits)
    assert topics.pos[(WEBHOOKS, 0)] == 1  # sought back to the deferral: read again, never skipped


def test_an_object_failing_past_the_give_up_time_is_dead_lettered_with_its_first_reason():
    norm, topics, producer, _refetch, wall = setup(policy=DeferPolicy(first_delay_s=10, max_delay_s=600,
                                                                      give_up_s=3_600))
    topics.put(WEBHOOKS, [thin(7, 500), thin(8, 500)])
    for _ in range(30):  # the API stays down; each due deferral is tried once more
        wall.now += 600
        step(norm, topics, producer)
    counts = [d.count for _k, _v, d in written_back(producer)]
    # one try every 600 s: the seventh, 3,600 s after the first failure, gives up
    assert counts == list(range(1, len(counts) + 1)) and len(counts) == 6
    [letter] = dead_letters(producer)
    assert letter["reason"] == f"gave up after 6 deferrals: re-fetch failed transiently: {DOWN}"
    assert set(records(producer)) == {"hubspot.contact.8"}
    assert topics.poll_all(10) == []  # nothing left circulating


@pytest.mark.parametrize("order", ["ascending", "descending", "interleaved"])
def test_a_burst_of_deferrals_three_times_the_batch_is_committed_past_and_lands_once_the_api_answers(order):
    # 12 failing objects (3x the batch of 4) among 12 good ones, in every walk order
    bad, good = [str(i) for i in range(100, 112)], [str(i) for i in range(200, 212)]
    ids = {"ascending": bad + good, "descending": (bad + good)[::-1],
           "interleaved": [x for pair in zip(bad, good, strict=True) for x in pair]}[order]
    norm, topics, producer, refetch, wall = setup(bad=bad, batch_size=4)
    topics.put(WEBHOOKS, [thin(int(i), 500) for i in ids])
    cycle(norm, topics, producer, batch_size=4, limit=12)  # the first pass: the deferrals are not due yet
    assert set(records(producer)) == {f"hubspot.contact.{i}" for i in good}
    assert sorted(k for k, _v, _d in written_back(producer)) == sorted(f"hubspot.contact.{i}" for i in bad)
    refetch.bad.clear()
    wall.now += 10
    cycle(norm, topics, producer, batch_size=4)
    assert set(records(producer)) == {f"hubspot.contact.{i}" for i in ids} and dead_letters(producer) == []
    assert producer.aborts == 0


def test_a_deferral_returning_after_a_newer_observation_never_moves_the_record_back():
    truth = {"7": {"id": "7", "n": 2}}
    norm, topics, producer, refetch, wall = setup()
    topics.put(WEBHOOKS, [thin(7, 500)])
    norm.process(topics.poll_all(10))
    topics.written_back(producer)
    topics.put(CHANGES, [change(7, 2_000, truth["7"])])  # a newer full observation lands meanwhile
    topics.pos[(WEBHOOKS, 0)] = 1  # the change is read first
    norm.process(topics.poll_all(10)[-1:])
    refetch.bad.clear()
    # the API's current state: what was fenced, at its version (never older)
    refetch._state = lambda obs: dataclasses.replace(obs, data=truth["7"], version=max(obs.version, 2_000), thin=False)
    wall.now += 10
    topics.pos[(WEBHOOKS, 0)] = 1
    cycle(norm, topics, producer)
    versions = [orjson.loads(v)["version"] for t, _k, v, _h in producer.sent if t == f"{API}.records"]
    assert versions == [2_000]  # the deferred re-fetch found the same state: unchanged, no second record


def test_a_tie_whose_refetch_fails_transiently_is_written_back_to_its_topic_and_settled_later():
    norm, topics, producer, refetch, wall = setup(bad=("7",))
    topics.put(CHANGES, [change(7, 5_000, {"id": "7", "n": 1}), change(7, 5_000, {"id": "7", "n": 2})])
    norm.process(topics.poll_all(10))
    [(key, value, deferral)] = written_back(producer, CHANGES)
    assert key == "hubspot.contact.7" and value["data"] == {"id": "7", "n": 2} and deferral.count == 1
    assert producer.aborts == 0 and topics.committed_at[(CHANGES, 0)] == 2
    topics.written_back(producer)
    refetch.bad.clear()
    wall.now += 10
    cycle(norm, topics, producer)
    assert records(producer)["hubspot.contact.7"]["data"] == {"id": "7", "n": 1}  # the server's state decides
    assert dead_letters(producer) == []
