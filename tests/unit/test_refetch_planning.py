"""Re-fetches planned before the transaction: none while it is open, one read per key, batches cut at the bound."""

import contextlib
import dataclasses

import orjson
import pytest
from confluent_kafka import OFFSET_INVALID, TopicPartition

from apisync import registry
from apisync.fence import Verdict
from apisync.normalizer import Normalizer

API = "hubspot"
WEBHOOKS, CHANGES = f"{API}.webhooks", f"{API}.changes"


class Msg:
    def __init__(self, topic, partition, offset, value):
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def key(self):
        return None

    def headers(self):
        return []

    def error(self):
        return None


class FakeConsumer:
    """Hands out a topic's messages from its position; seek moves the position back."""

    def __init__(self, log):
        self.log, self.logs, self.pos, self.committed_at = {}, log, {}, {}

    def add(self, topic, partition, values):
        start = len(self.log.setdefault((topic, partition), []))
        self.log[(topic, partition)] += [Msg(topic, partition, start + i, v) for i, v in enumerate(values)]
        self.pos.setdefault((topic, partition), 0)

    def poll_all(self, n):
        out = []
        for tp, msgs in self.log.items():
            taken = msgs[self.pos[tp]:self.pos[tp] + n - len(out)]
            self.pos[tp] += len(taken)
            out += taken
        return out

    def subscribe(self, *_a, **_k):
        pass

    def assignment(self):
        return [TopicPartition(t, p) for t, p in self.log]

    def position(self, tps):
        return [TopicPartition(tp.topic, tp.partition, self.pos[(tp.topic, tp.partition)]) for tp in tps]

    def committed(self, tps, timeout=None):
        return [TopicPartition(tp.topic, tp.partition, self.committed_at.get((tp.topic, tp.partition), OFFSET_INVALID))
                for tp in tps]

    def seek(self, tp):
        self.logs.append(("seek", tp.topic, tp.partition, tp.offset))
        self.pos[(tp.topic, tp.partition)] = tp.offset

    def consumer_group_metadata(self):
        return None


class FakeFence:
    """Versions per key; states of an attempt count once its transaction committed (as the ledger's rollback)."""

    def __init__(self):
        self.states, self.staged = {}, {}

    def claim(self, tps):
        return {tp: 1 for tp in tps}

    def expect_committed(self, _committed):
        pass

    def mark_judged(self, _api, _ends, _epochs=None):
        pass

    def _judge(self, items, authoritative=False):
        verdicts = []
        for obs, _source in items:
            now = self.staged.get(obs.key) or self.states.get(obs.key)
            mine = (obs.version, obs.content_hash())
            if now is None or obs.version > now[0] or (authoritative and obs.version == now[0] and mine != now):
                self.staged[obs.key] = mine
                verdicts.append(Verdict("accepted"))
            elif mine == now:
                verdicts.append(Verdict("unchanged"))
            elif obs.version == now[0]:
                verdicts.append(Verdict("conflict"))
            else:
                verdicts.append(Verdict("stale"))
        return verdicts

    def stream_chunks(self, chunks, attempt, positions, epochs=None):
        self.staged = {}
        for chunk in chunks:
            yield chunk, self._judge(chunk)

    def check_many(self, items, attempt, positions, authoritative=False, epochs=None):
        return self._judge(items, authoritative)

    def commit(self):
        self.states.update(self.staged)
        self.staged = {}


class FakeProducer:
    """Records every message, and whether a transaction was open at each moment that matters."""

    def __init__(self, fence, consumer, log):
        self.fence, self.consumer, self.log, self.open = fence, consumer, log, False
        self.sent, self.commits, self.aborts = [], 0, 0

    @contextlib.contextmanager
    def transaction(self):
        self.open = True
        try:
            yield self
        except BaseException:
            self.aborts += 1
            raise
        finally:
            self.open = False
        self.commits += 1
        self.fence.commit()
        for tp in self._offsets:
            self.consumer.committed_at[(tp.topic, tp.partition)] = tp.offset

    def send_encoded(self, out):
        assert self.open
        self.sent += list(out)

    def send_offsets_to_transaction(self, offsets, _meta):
        self._offsets = offsets


def hubspot_event(object_id, occurred, kind="contact.propertyChange"):
    return orjson.dumps({"subscriptionType": kind, "objectId": object_id, "occurredAt": occurred})


class Refetcher:
    """The API: current state per id; a list call reads `per_call` objects; records each call and the transaction."""

    def __init__(self, producer_box, per_call=100, truth=None):
        self.per_call, self.calls, self.box, self.truth = per_call, [], producer_box, truth or {}

    def _state(self, obs):
        return dataclasses.replace(obs, data=self.truth.get(obs.id, {"id": obs.id, "n": 1}),
                                   version=max(obs.version, 1_000), thin=False)

    def __call__(self, obs):
        self.calls.append(([obs.id], self.box[0].open))
        return self._state(obs)

    def many(self, observations):
        self.calls.append(([o.id for o in observations], self.box[0].open))
        return [self._state(o) for o in observations]


def normalizer(per_call=100, max_requests=None, batch_size=5000, truth=None):
    log, box = [], []
    consumer, fence = FakeConsumer(log), FakeFence()
    producer = FakeProducer(fence, consumer, log)
    box.append(producer)
    refetch = Refetcher(box, per_call, truth)
    bound = {} if max_requests is None else {"max_refetch_requests": max_requests}
    norm = Normalizer(API, consumer, producer, fence, refetch=refetch, batch_size=batch_size, **bound)
    return norm, consumer, producer, refetch


def drain(norm, consumer, batch_size=5000, limit=100):
    """Process polled batches until nothing is left; the number of transactions."""
    batches = 0
    for _ in range(limit):
        messages = consumer.poll_all(batch_size)
        if not messages:
            return batches
        norm.process(messages)
        batches += 1
    raise AssertionError("did not drain")


def records(producer):
    return {key.decode(): orjson.loads(value) for topic, key, value, _h in producer.sent
            if topic == f"{API}.records" and value is not None}


def test_no_refetch_happens_while_a_transaction_is_open():
    norm, consumer, producer, refetch = normalizer()
    consumer.add(WEBHOOKS, 0, [hubspot_event(i, 500 + i) for i in range(300)])
    drain(norm, consumer)
    assert refetch.calls and [opened for _ids, opened in refetch.calls].count(True) == 0
    assert len(records(producer)) == 300


def test_thin_webhooks_of_one_key_become_one_read_and_one_record():
    norm, consumer, producer, refetch = normalizer()
    consumer.add(WEBHOOKS, 0, [hubspot_event(7, 500 + i) for i in range(10)] + [hubspot_event(8, 600)])
    drain(norm, consumer)
    assert [sorted(ids) for ids, _open in refetch.calls] == [["7", "8"]]  # one list call, each key once
    recs = [(t, k) for t, k, _v, _h in producer.sent if t == f"{API}.records"]
    assert sorted(recs) == [(f"{API}.records", b"hubspot.contact.7"), (f"{API}.records", b"hubspot.contact.8")]


@pytest.fixture
def hinting_spec():
    """The API's spec with a webhook refetch hint that names each body it is asked about."""
    original = registry.spec_for(API)
    asked = []

    def hint(body, options):
        asked.append((orjson.loads(body)["objectId"], dict(options)))
        return f"set the subscription's full payloads to spare reading {orjson.loads(body)['objectId']}"

    registry.register(dataclasses.replace(original, webhook=dataclasses.replace(original.webhook, refetch_hint=hint)))
    yield asked
    registry.register(original)


def test_the_specs_refetch_hint_is_said_once_per_run(hinting_spec, caplog):
    norm, consumer, _producer, _refetch = normalizer()
    for start in (1, 3):  # two batches, so a second thin webhook comes after the hint was said
        consumer.add(WEBHOOKS, 0, [hubspot_event(start, 500), hubspot_event(start + 1, 500)])
        drain(norm, consumer)
    said = [r.getMessage() for r in caplog.records if "spare reading" in r.getMessage()]
    assert said == [f"normalizer {API}: set the subscription's full payloads to spare reading 1"]
    assert hinting_spec == [(1, {})]  # not asked again once said


def test_non_thin_observations_of_the_key_keep_their_place_and_the_fence_decides():
    norm, consumer, producer, _refetch = normalizer()
    # thin, deletion (not thin, newer than the fetched state's version 1,000), thin again
    consumer.add(WEBHOOKS, 0, [hubspot_event(7, 500), hubspot_event(7, 2_000, "contact.deletion"),
                               hubspot_event(7, 600)])
    drain(norm, consumer)
    values = [v for t, k, v, _h in producer.sent if t == f"{API}.records"]
    assert values[-1] is None  # the delete stands: the fetched state (version 1,000) is older


@pytest.mark.parametrize("order", ["interleaved", "grouped", "reversed"])
def test_a_batch_past_the_bound_is_cut_and_the_rest_read_next_nothing_lost(order):
    # 3 requests per batch at most, 1 object per request: a burst of 40 objects (13x the bound), 3 webhooks each
    ids = list(range(40))
    events = {"interleaved": [(i, r) for r in range(3) for i in ids],
              "grouped": [(i, r) for i in ids for r in range(3)],
              "reversed": [(i, r) for r in range(3) for i in reversed(ids)]}[order]
    norm, consumer, producer, refetch = normalizer(per_call=1, max_requests=3)
    consumer.add(WEBHOOKS, 0, [hubspot_event(i, 500 + r) for i, r in events[:60]])
    consumer.add(WEBHOOKS, 1, [hubspot_event(i, 500 + r) for i, r in events[60:]])
    batches = drain(norm, consumer)
    assert batches >= 40 // 3 and not any(opened for _ids, opened in refetch.calls)
    assert set(records(producer)) == {f"hubspot.contact.{i}" for i in ids}  # nothing lost
    assert producer.commits == batches and producer.aborts == 0
    # a key's messages cut off into the next batch were polled before its read: no second read
    assert sorted(i for ids_, _opened in refetch.calls for i in ids_) == sorted(str(i) for i in ids)


def test_each_cut_batch_stays_within_the_bound():
    norm, consumer, producer, refetch = normalizer(per_call=2, max_requests=2)
    consumer.add(WEBHOOKS, 0, [hubspot_event(i, 500) for i in range(30)])  # 15 requests: 7.5x the bound
    calls_per_batch = []
    while messages := consumer.poll_all(5000):
        before = len(refetch.calls)
        norm.process(messages)
        calls_per_batch.append(len(refetch.calls) - before)
    assert max(calls_per_batch) <= 2 and len(calls_per_batch) == 8
    assert len(records(producer)) == 30


def test_many_ties_are_refetched_outside_the_transaction():
    truth = {str(i): {"id": str(i), "winner": True} for i in range(20)}
    norm, consumer, producer, refetch = normalizer(per_call=1, truth=truth)  # 20 requests: past the inline 2
    # two different contents at one version per key, from the changes topic: equal-version ties
    changes = []
    for i in range(20):
        for n in (1, 2):
            changes.append(orjson.dumps({"api": API, "collection": "contact", "id": str(i), "version": 5_000,
                                         "source": "poll", "synced_at": "", "data": {"id": str(i), "n": n}}))
    consumer.add(CHANGES, 0, changes)
    drain(norm, consumer)
    assert refetch.calls and not any(opened for _ids, opened in refetch.calls)
    assert producer.aborts == 1  # the round that found them
    assert {key: value["data"] for key, value in records(producer).items() if "winner" in value["data"]} == {
        f"hubspot.contact.{i}": truth[str(i)] for i in range(20)}


def test_a_few_ties_are_settled_inside_the_transaction_in_one_list_call():
    norm, consumer, producer, refetch = normalizer(per_call=100)
    consumer.add(CHANGES, 0, [orjson.dumps({"api": API, "collection": "contact", "id": str(i), "version": 5_000,
                                            "source": "poll", "synced_at": "", "data": {"id": str(i), "n": n}})
                              for i in range(20) for n in (1, 2)])
    drain(norm, consumer)
    assert [len(ids) for ids, _opened in refetch.calls] == [20] and producer.aborts == 0


class Failing(Refetcher):
    """A list call that fails for some ids with the given error."""

    def __init__(self, box, error, bad):
        super().__init__(box, per_call=1)
        self.error, self.bad = error, bad

    def __call__(self, obs):
        if obs.id in self.bad:
            self.calls.append(([obs.id], self.box[0].open))
            raise self.error
        return super().__call__(obs)


def failing_normalizer(error, bad):
    log, box = [], []
    consumer, fence = FakeConsumer(log), FakeFence()
    producer = FakeProducer(fence, consumer, log)
    box.append(producer)
    refetch = Failing(box, error, bad)
    return Normalizer(API, consumer, producer, fence, refetch=refetch), consumer, producer, refetch


def test_a_refused_object_dead_letters_every_message_of_its_key_and_the_rest_goes_on():
    from apisync.http import FatalError
    norm, consumer, producer, _refetch = failing_normalizer(FatalError(API, "GET", "/x", 403, "no"), {"7"})
    consumer.add(WEBHOOKS, 0, [hubspot_event(7, 500), hubspot_event(8, 500), hubspot_event(7, 600)])
    drain(norm, consumer)
    assert [t for t, *_ in producer.sent if t == f"{API}.dlq"] == [f"{API}.dlq"] * 2
    assert set(records(producer)) == {"hubspot.contact.8"}


def test_a_transient_failure_aborts_nothing_and_the_batch_commits_past_its_object():
    from apisync.http import RetriableError
    norm, consumer, producer, _refetch = failing_normalizer(RetriableError(API, "GET", "/x", 503, "down"), {"7"})
    consumer.add(WEBHOOKS, 0, [hubspot_event(8, 500), hubspot_event(7, 500)])
    norm.process(consumer.poll_all(10))
    assert producer.commits == 1 and producer.aborts == 0 and set(records(producer)) == {"hubspot.contact.8"}
    assert [t for t, *_ in producer.sent if t == WEBHOOKS] == [WEBHOOKS]  # written back (test_refetch_deferral)


def stripe_event(version, created=1_000):
    return orjson.dumps({"type": "customer.updated", "created": created, "api_version": version,
                         "data": {"object": {"id": "cus_1", "object": "customer"}}})


def test_a_stripe_version_mismatch_is_said_once_per_run_with_how_to_avoid_it(caplog):
    log, box = [], []
    consumer, fence = FakeConsumer(log), FakeFence()
    producer = FakeProducer(fence, consumer, log)
    box.append(producer)
    norm = Normalizer("stripe", consumer, producer, fence, refetch=Refetcher(box, per_call=1),
                      webhook_options={"api_version": "2024-06-20"})
    consumer.add("stripe.webhooks", 0, [stripe_event("2025-01-27", c) for c in range(1_000, 1_005)]
                 + [stripe_event("2024-06-20", 2_000)])
    with caplog.at_level("WARNING", "apisync.normalizer"):
        norm.process(consumer.poll_all(100))
        consumer.add("stripe.webhooks", 0, [stripe_event("2025-01-27", 3_000)])
        norm.process(consumer.poll_all(100))
    lines = [r.getMessage() for r in caplog.records if "API version" in r.getMessage()]
    assert len(lines) == 1 and "2025-01-27" in lines[0] and "2024-06-20" in lines[0] and "api_version" in lines[0]
