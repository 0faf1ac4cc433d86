"""The Redis version fence on a real redis-server: ordering, dedup, and rollback of aborted attempts."""

import base64
import uuid

import lz4.block
import orjson
import pytest
import redis

import apisync.apis  # noqa: F401 - registers the APIs, whose specs give the ledger's dictionaries
from apisync.events import Observation
from apisync.fence import FencedOut, LedgerLost, LedgerUnavailable, Rejudge, SourcePosition, VersionFence
from apisync.ledger_states import codec_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def fence(redis_url):
    client = redis.Redis.from_url(redis_url)
    prefix = f"test:ledger:{uuid.uuid4().hex}"
    fence = VersionFence(client, prefix=prefix)
    fence.mark_generation("stripe", "test")  # a complete ledger
    yield fence
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)


def obs(version, status="active", deleted=False):
    data = None if deleted else {"id": "sub_1", "status": status}
    return Observation("stripe", "subscription", "sub_1", version, "poll", "", data, deleted)


def at(offset, topic="stripe.changes", partition=0):
    return SourcePosition(topic, partition, offset)


def test_accepts_newer_discards_older_and_unchanged(fence):
    positions = {"stripe.changes:0": 0}
    verdicts = fence.check_many([(obs(10), at(0)), (obs(5, "x"), at(1)), (obs(10), at(2)),
                                 (obs(20, "canceled"), at(3)), (obs(20, "past_due"), at(4))], "a1", positions)
    assert [v.status for v in verdicts] == ["accepted", "stale", "unchanged", "accepted", "conflict"]
    assert verdicts[0].previous is None
    assert verdicts[3].previous == {"id": "sub_1", "status": "active"} and verdicts[3].previous_version == 10
    assert fence.current("stripe.subscription.sub_1") == {
        "version": 20, "deleted": False, "data": {"id": "sub_1", "status": "canceled"}}


def test_a_tie_is_a_conflict_until_the_servers_state_is_fenced_as_authoritative(fence):
    p = {"stripe.changes:0": 0}
    assert fence.check(obs(20, "canceled"), at(0), "a", p).accepted
    assert fence.check(obs(20, "past_due"), at(1), "a", p).status == "conflict"  # arrival order must not decide
    [settled] = fence.check_many([(obs(20, "past_due"), at(1))], "a", p, authoritative=True)
    assert settled.accepted and settled.previous == {"id": "sub_1", "status": "canceled"}
    assert fence.current("stripe.subscription.sub_1")["data"]["status"] == "past_due"
    [same] = fence.check_many([(obs(20, "past_due"), at(2))], "a", p, authoritative=True)
    assert same.status == "unchanged"  # the server's state equals the ledger: nothing to emit


def test_delete_wins_a_tie_and_blocks_resurrection(fence):
    p = {"stripe.changes:0": 0}
    assert fence.check(obs(10), at(0), "a", p).accepted
    deleted = fence.check(obs(10, deleted=True), at(1), "a", p)
    assert deleted.accepted and deleted.previous == {"id": "sub_1", "status": "active"}
    assert fence.check(obs(10), at(2), "a", p).status == "stale"
    assert fence.check(obs(11, deleted=True), at(3), "a", p).status == "unchanged"
    assert fence.check(obs(12, "active"), at(4), "a", p).accepted  # a newer version revives it


def test_redelivery_after_an_aborted_attempt_is_judged_like_the_first_time(fence):
    # committed batch: offset 0 (version 10)
    assert fence.check(obs(10), at(0), "batch1", {"stripe.changes:0": 0}).accepted
    # attempt 2 reads offsets 1..2 and advances the fence, then its transaction aborts
    aborted = fence.check_many([(obs(20, "canceled"), at(1)), (obs(30, "active"), at(2))],
                               "batch2-try1", {"stripe.changes:0": 1})
    assert [v.status for v in aborted] == ["accepted", "accepted"]
    # the retry starts again at offset 1: same verdicts, same previous data, nothing lost
    retry = fence.check_many([(obs(20, "canceled"), at(1)), (obs(30, "active"), at(2))],
                             "batch2-try2", {"stripe.changes:0": 1})
    assert [(v.status, v.previous) for v in retry] == [(v.status, v.previous) for v in aborted]
    assert retry[0].previous == {"id": "sub_1", "status": "active"} and retry[0].previous_version == 10


def test_rollback_spans_both_input_topics(fence):
    assert fence.check(obs(10), at(0), "c1", {"stripe.changes:0": 0, "stripe.webhooks:0": 0}).accepted
    start = {"stripe.changes:0": 1, "stripe.webhooks:0": 0}
    fence.check_many([(obs(20, "canceled"), at(1)), (obs(25, "past_due"), at(0, "stripe.webhooks"))], "t1", start)
    # the retry happens to see the webhook first: both uncommitted states must roll back
    retry = fence.check(obs(25, "past_due"), at(0, "stripe.webhooks"), "t2", start)
    assert retry.accepted and retry.previous == {"id": "sub_1", "status": "active"}


def test_committed_states_are_not_rolled_back_and_the_stack_stays_small(fence):
    for batch in range(5):
        start = {"stripe.changes:0": batch * 2}
        fence.check_many([(obs(100 + batch * 2, f"s{batch}a"), at(batch * 2)),
                          (obs(101 + batch * 2, f"s{batch}b"), at(batch * 2 + 1))], f"b{batch}", start)
    # a new batch (offset 10) sees the last committed state, not a rolled-back one
    verdict = fence.check(obs(200, "final"), at(10), "b5", {"stripe.changes:0": 10})
    assert verdict.previous == {"id": "sub_1", "status": "s4b"}
    raw = fence._redis.get(fence.ledger_key("stripe.subscription.sub_1"))
    assert len(orjson.loads(raw)) == 2  # last committed state + this batch's


def test_rebuilt_state_is_treated_as_committed(fence):
    fence.write_committed([obs(50, "rebuilt")])
    verdict = fence.check(obs(40, "older"), at(0), "x", {"stripe.changes:0": 0})
    assert verdict.status == "stale"
    assert fence.check(obs(60, "newer"), at(1), "x", {"stripe.changes:0": 0}).previous == {
        "id": "sub_1", "status": "rebuilt"}


def test_a_zombie_cannot_roll_back_its_successors_states(fence):
    """Issue: a stalled worker woke after its successor committed, popped the committed states and
    pushed its own; records then went 3000 -> 2500. Owner epochs refuse the zombie before any write."""
    zombie = fence.claim(["stripe.changes:0"])
    assert fence.check_many([(obs(2000), at(0))], "z1", {"stripe.changes:0": 0}, epochs=zombie)[0].accepted
    successor = fence.claim(["stripe.changes:0"])  # the group gave the partition to another worker
    assert fence.check_many([(obs(3000, "canceled"), at(1))], "s1", {"stripe.changes:0": 1},
                            epochs=successor)[0].accepted
    with pytest.raises(FencedOut):  # the zombie wakes with its old batch positions
        fence.check_many([(obs(2500, "past_due"), at(1))], "z2", {"stripe.changes:0": 0}, epochs=zombie)
    assert fence.current("stripe.subscription.sub_1") == {
        "version": 3000, "deleted": False, "data": {"id": "sub_1", "status": "canceled"}}
    stale = fence.check_many([(obs(2500, "past_due"), at(2))], "s2", {"stripe.changes:0": 2}, epochs=successor)
    assert stale[0].status == "stale"


def test_a_ledger_redis_lost_answers_lost_instead_of_treating_keys_as_new(fence):
    assert fence.check(obs(3000), at(0), "a", {"stripe.changes:0": 0}).accepted
    for key in fence._redis.scan_iter(match=f"{fence._prefix}:*"):  # Redis restarted empty
        fence._redis.delete(key)
    with pytest.raises(LedgerLost):
        fence.check(obs(2500, "stale"), at(1), "b", {"stripe.changes:0": 1})


def test_equal_content_is_decided_on_the_hash_not_on_the_compressed_bytes(fence, redis_url):
    # Another lz4 build may compress the same JSON to other bytes: that must never read as a change.
    client = redis.Redis.from_url(redis_url)
    data = {"id": "sub_1", "status": "active"}
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    stripe = codec_for("stripe")
    other = lz4.block.compress(canonical, mode="high_compression", compression=12, dict=stripe.dictionary,
                               store_size=True)
    recompressed = stripe.pack(data)[:17] + base64.urlsafe_b64encode(other).decode()
    assert recompressed != stripe.pack(data) and stripe.unpack(recompressed) == data
    state = {"v": "10", "d": recompressed, "x": 0, "t": "", "o": "0", "a": "rebuild"}
    client.set(fence.ledger_key("stripe.subscription.sub_1"), orjson.dumps([state]))
    p = {"stripe.changes:0": 0}
    verdicts = fence.check_many([(obs(10), at(0)), (obs(10, "past_due"), at(1))], "a", p)
    assert [v.status for v in verdicts] == ["unchanged", "conflict"]


def test_a_ledger_state_costs_less_than_the_objects_json(fence):
    """Issue: the ledger held about 2.3x a 600 B customer's JSON per key."""
    import random

    rng = random.Random(1)
    words = ["sync", "ledger", "invoice", "retry", "cursor", "webhook", "backfill", "tombstone", "partition"]
    customer = {"id": "cus_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(14)),
                "object": "customer", "address": None, "balance": 0, "created": 1795704812, "currency": "usd",
                "default_source": None, "delinquent": False, "description": " ".join(rng.choices(words, k=4)),
                "email": "grace.hopper@example.com", "invoice_prefix": "A1B2C3D4", "livemode": False,
                "metadata": {"plan": "gold", "region": "eu-west"}, "name": "Grace Hopper", "phone": "+15555550123",
                "preferred_locales": ["en"], "shipping": None, "tax_exempt": "none", "test_clock": None,
                "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None}}
    size = len(orjson.dumps(customer))
    assert 500 <= size <= 700  # about the 600 B customer the issue measured
    state = orjson.dumps([fence.entry(Observation("stripe", "customer", customer["id"], 1795704812000, "poll", "",
                                                  customer), "stripe.changes:3", 123456, "0123456789ab")])
    assert len(state) <= size, (len(state), size)


def other(version, ident, status="active"):
    return Observation("stripe", "subscription", ident, version, "poll", "", {"id": ident, "status": status})


def test_chunks_are_judged_as_one_call_would_judge_them(fence):
    # the same key in several chunks: each chunk sees what the ones before it wrote
    items = [(obs(10), at(0)), (other(5, "sub_2"), at(1)), (obs(9, "old"), at(2)), (obs(11, "past_due"), at(3)),
             (obs(11, "past_due"), at(4)), (other(5, "sub_2", "paused"), at(5))]
    attempt, judged = fence.check_chunks([items[:2], [], items[2:4], items[4:]], "a", {"stripe.changes:0": 0})
    assert attempt == "a"
    assert [[v.status for v in verdicts] for _items, verdicts in judged] == [
        ["accepted", "accepted"], [], ["stale", "accepted"], ["unchanged", "conflict"]]
    assert judged[2][1][1].previous == {"id": "sub_1", "status": "active"}


def lose_the_script_at_call(fence, monkeypatch, call):
    """From the `call`-th script call of the fence on, Redis answers NOSCRIPT (as after a SCRIPT FLUSH
    between two calls of one pipeline) until the fence loads the script again."""
    calls, batch = [], fence._batch

    def counted(*args):
        calls.append(1)
        if len(calls) == call:
            fence._script.sha = "0" * 40  # a script Redis does not know
        return batch(*args)

    monkeypatch.setattr(fence, "_batch", counted)


def test_a_script_lost_before_a_later_chunk_rejudges_the_whole_batch_under_a_new_attempt(fence, redis_url,
                                                                                          monkeypatch):
    # chunk 1 is written before Redis answers chunk 2 NOSCRIPT; judged again under the same attempt,
    # chunk 1 would read its own state back as "unchanged" and its change would never reach Kafka
    client = redis.Redis.from_url(redis_url)
    lose_the_script_at_call(fence, monkeypatch, 2)
    attempt, judged = fence.check_chunks([[(obs(10), at(0))], [(other(10, "sub_2"), at(1))]], "a",
                                         {"stripe.changes:0": 0})
    assert attempt != "a"
    assert [verdicts[0].status for _items, verdicts in judged] == ["accepted", "accepted"]
    stack = orjson.loads(client.get(fence.ledger_key("stripe.subscription.sub_1")))
    assert [state["a"] for state in stack] == [attempt], "the first pass's state was rolled back"


def test_streamed_chunks_are_judged_as_check_chunks_judges_them(fence):
    items = [(obs(10), at(0)), (other(5, "sub_2"), at(1)), (obs(9, "old"), at(2)), (obs(11, "past_due"), at(3)),
             (obs(11, "past_due"), at(4)), (other(5, "sub_2", "paused"), at(5))]
    streamed = list(fence.stream_chunks([items[:2], [], items[2:4], items[4:]], "a", {"stripe.changes:0": 0}))
    assert [list(chunk) for chunk, _verdicts in streamed] == [items[:2], items[2:4], items[4:]]
    assert [[v.status for v in verdicts] for _items, verdicts in streamed] == [
        ["accepted", "accepted"], ["stale", "accepted"], ["unchanged", "conflict"]]
    assert streamed[1][1][1].previous == {"id": "sub_1", "status": "active"}


def test_a_stream_left_midway_leaves_no_reply_behind_for_the_next_call(fence):
    # The caller stops after the first chunk (its transaction failed) while Redis still owes the second
    # chunk's reply; the connection goes back to the pool, and its next user must not read that reply.
    stream = fence.stream_chunks([[(obs(10), at(0))], [(other(5, "sub_2"), at(1))]], "a", {"stripe.changes:0": 0})
    _items, verdicts = next(stream)
    assert verdicts[0].status == "accepted"
    stream.close()
    again = fence.check_many([(obs(12, "x"), at(2)), (obs(13, "y"), at(3))], "a", {"stripe.changes:0": 0})
    assert [v.status for v in again] == ["accepted", "accepted"]
    assert again[0].previous == {"id": "sub_1", "status": "active"}


def test_a_script_lost_before_a_streamed_chunk_voids_the_stream(fence, redis_url, monkeypatch):
    # Chunk 1 was answered (and its messages produced) before Redis answered chunk 2 NOSCRIPT: the caller
    # must drop chunk 1's work and judge the whole batch again, which rolls chunk 1's state back.
    client = redis.Redis.from_url(redis_url)
    lose_the_script_at_call(fence, monkeypatch, 2)
    chunks = [[(obs(10), at(0))], [(other(10, "sub_2"), at(1))]]
    stream = fence.stream_chunks(chunks, "a", {"stripe.changes:0": 0})
    assert next(stream)[1][0].status == "accepted"
    with pytest.raises(Rejudge, match="no longer knows"):
        next(stream)
    attempt, judged = fence.check_chunks(chunks, "b", {"stripe.changes:0": 0})
    assert [verdicts[0].status for _items, verdicts in judged] == ["accepted", "accepted"]
    stack = orjson.loads(client.get(fence.ledger_key("stripe.subscription.sub_1")))
    assert [state["a"] for state in stack] == [attempt], "the stream's state was rolled back"


def test_a_stream_loads_the_script_first_and_a_flush_later_voids_it(fence, redis_url):
    redis.Redis.from_url(redis_url).script_flush()  # a fresh Redis: the first stream must not be voided
    first = list(fence.stream_chunks([[(obs(10), at(0))], [(obs(11, "x"), at(1))]], "a", {"stripe.changes:0": 0}))
    assert [verdicts[0].status for _items, verdicts in first] == ["accepted", "accepted"]
    redis.Redis.from_url(redis_url).script_flush()  # Redis restarted under a running normalizer
    with pytest.raises(Rejudge, match="no longer knows"):
        list(fence.stream_chunks([[(obs(12, "y"), at(2))]], "b", {"stripe.changes:0": 2}))


def test_a_flushed_script_is_loaded_again(fence, redis_url):
    redis.Redis.from_url(redis_url).script_flush()
    _attempt, judged = fence.check_chunks([[(obs(10), at(0))], [(obs(11, "x"), at(1))]], "a",
                                          {"stripe.changes:0": 0})
    assert [verdicts[0].status for _items, verdicts in judged] == ["accepted", "accepted"]


def test_a_reply_lost_after_the_script_ran_is_never_answered_by_running_it_again(fence, monkeypatch):
    # A repeat under the same attempt reads the states the lost call wrote as "unchanged": the change
    # would be committed without its record. The batch must be aborted and read again instead.
    real = redis.connection.Connection.read_response
    lost = []

    def read_then_drop(self, *args, **kwargs):
        reply = real(self, *args, **kwargs)
        if not lost:
            lost.append(reply)
            raise redis.exceptions.ConnectionError("connection reset by peer")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", read_then_drop)
    with pytest.raises(LedgerUnavailable):
        fence.check(obs(10), at(0), "a", {"stripe.changes:0": 0})
    assert lost, "the script ran before the reply was lost"
    again = fence.check(obs(10), at(0), "b", {"stripe.changes:0": 0})  # the batch read again: a new attempt
    assert again.status == "accepted" and again.previous is None


def test_an_unreachable_ledger_is_a_clear_error():
    unreachable = VersionFence(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), prefix="x")
    with pytest.raises(LedgerUnavailable, match="the Redis ledger did not answer"):
        unreachable.check_many([(obs(10), at(0))], "a", {"stripe.changes:0": 0})
