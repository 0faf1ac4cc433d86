"""Version fence: the Redis ledger that decides whether an observation may change a record.

One atomic Lua script call per chunk of a batch (`fence.lua`, every key of the chunk; the chunks of a
batch are pipelined on one connection, see `VersionFence.stream_chunks` and `check_chunks`), judged in
batch order exactly as one call per observation would: accept a newer version, discard an
older one ("stale"), report "unchanged" when the content equals the stored one, and "conflict" when
the version is equal but the content differs (upstream stamps are whole seconds: arrival order must
not decide; the caller re-fetches and fences the server's state again as `authoritative`, which wins
the tie). The ledger keeps the last data per key, so the normalizer can diff without reading the
records topic.

Fence vs Kafka transaction: the normalizer writes Redis *inside* a Kafka transaction that may still
abort (crash, fencing). If the ledger simply advanced, the retry would see "unchanged" and emit
nothing, losing the change. So each ledger key is a small stack of states, each tagged with the
source position (`topic:partition`, offset) that produced it and the attempt (one id per batch try)
that wrote it. Before deciding, the script pops every state written by *another* attempt at an
offset >= the batch's start position of that partition: such a state came from an attempt whose
offsets were never committed (had they been, the consumer would start after them), so the ledger
rolls back to the state before it and the re-delivered observation is judged exactly as the first
time, with the same previous data for the diff and the same event ids. States below the newest
committed one are dropped on every write, so the stack stays one state plus the current batch's.
Nothing has to be written after the commit, so a crash between commit and any follow-up is harmless.

Two more guards make Redis as safe as the Kafka side:
- **Owner epochs (zombies).** Kafka fences a stalled normalizer's transactions, but Redis would take its
  writes. Each normalizer bumps `<prefix>:~owner:<topic:partition>` when the group assigns it a
  partition and passes the epoch it got; the script refuses ("fenced") a write from an older epoch,
  before it pops or pushes anything, so a zombie can never roll its successor's states back.
- **Generation marker (total loss).** `<prefix>:~generation:<api>` is set once the ledger is complete
  (fresh, or rebuilt from `<api>.records`). A Redis restarted empty or flushed has no marker, and the
  script answers "lost" instead of treating every key as new (which would accept stale versions and
  re-emit `created`): the normalizer rebuilds first (see `apisync.ledger.ensure_ledger`).
- **Judged offsets and key set (partial loss).** A Redis that restarts from an AOF fsynced once a second,
  or fails over to a lagging replica, keeps the marker but goes back in time, while Kafka keeps the
  commits of the batches it forgot. So the ledger keeps, per source partition, the offset it has judged
  up to (`<prefix>:~judged:<api>`, written in the same call as the states it covers), and every call
  carries the offsets Kafka has committed for its partitions (`expect_committed`): a ledger below them
  lost writes. An owner epoch below this owner's lost its claim the same way. A key evicted alone leaves
  the offsets intact, so the ledger also keeps the set of its keys (`<prefix>:~keys:<api>`, written with
  the keys): a key the set names but Redis does not hold is lost, never "new". Each of these answers
  "lost" before any verdict and deletes the marker, so every normalizer waits while one rebuilds. The
  offsets hash names the generation it belongs to and is written with the marker, the key set is never
  empty ("~"): either one gone (evicted, or a ledger from before they existed) is a loss too.

A state's data is packed by `apisync.ledger_states` with the codec of its api (`codec_for`, or the
`codecs` a VersionFence is given): it leads with a prefix of the content hash, on which the script
decides equal content, then holds the data compressed with that api's own dictionary. The keys, and
their upkeep outside the script (rebuild writes, the marker, the key set's index), are
`apisync.ledger_store`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apisync.errors import RetriableError
from apisync.events import Observation
from apisync.ledger_states import StateCodec, codec_for
from apisync.ledger_store import LEDGER_PREFIX, LedgerStore

Item = tuple[Observation, "SourcePosition"]  # an observation and where it was read


class LedgerLost(RetriableError):
    """Redis lost ledger data (all of it, or writes Kafka kept, or keys): rebuild before fencing anything."""


class FencedOut(RetriableError):
    """Another normalizer owns this partition now (a newer owner epoch): this one is a zombie."""


class Rejudge(RetriableError):
    """A streamed judgement cannot go on (Redis no longer knows the script): the caller drops what it
    did with earlier chunks and judges the whole batch with `VersionFence.check_chunks` under a new
    attempt, which rolls the first one's states back."""


class LedgerUnavailable(RetriableError):
    """Redis did not answer a fence call; the batch must be judged again under a new attempt (the call
    may have run, and a repeat under the same attempt would read its own states as "unchanged")."""


class SourcePosition(NamedTuple):
    """Where an observation was read: topic, partition, offset (a tuple: made per observation, and a
    frozen dataclass costs twice as much to make)."""

    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> str:
        """`topic:partition`, the ledger's name for a source partition."""
        return f"{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The fence's answer for one observation, with the state it replaced."""

    status: str  # accepted | unchanged | stale | conflict (lost and fenced are raised)
    previous_version: int | None = None
    previous_deleted: bool = False
    previous_packed: str = ""  # the replaced state's data as the ledger holds it
    codec: StateCodec | None = field(default=None, repr=False, compare=False)  # its api's, to unpack it

    @property
    def previous(self) -> dict[str, Any] | None:
        """Last live data; None when the key is new or deleted (unpacked on use: most verdicts never need it)."""
        if not self.previous_packed or self.previous_deleted:
            return None
        return self.codec.unpack(self.previous_packed)  # set whenever a state was replaced

    @property
    def accepted(self) -> bool:
        """True when the observation changes the record."""
        return self.status == "accepted"


class VersionFence(LedgerStore):
    """The Redis ledger of one api: `apisync:ledger:<record key>` → stack of states, judged by the script
    (keys and upkeep: `LedgerStore`; `codecs`: api → the StateCodec its states are packed with)."""

    def __init__(self, client: Any, prefix: str = LEDGER_PREFIX,
                 codecs: Callable[[str], StateCodec] = codec_for) -> None:
        super().__init__(client, prefix, codecs)
        self._script = client.register_script(_script_source())
        self._claim = client.register_script(_CLAIM)
        self._script_loaded = False  # known to this Redis (calls use EVALSHA alone)
        self._committed: dict[str, int] = {}  # per `topic:partition`: what the ledger must have judged

    def _load_script(self) -> None:
        try:
            self._script.sha = self._redis.script_load(self._script.script)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise LedgerUnavailable(f"the Redis ledger did not answer: {exc}") from None
        self._script_loaded = True

    def check_many(
        self,
        items: Sequence[Item],
        attempt: str,
        positions: Mapping[str, int],
        authoritative: bool = False,
        epochs: Mapping[str, int] | None = None,
    ) -> list[Verdict]:
        """Fence every observation in order (one script call); positions = batch start per `topic:partition`.

        `authoritative`: the observations are the server's current state (re-fetched), so at an equal
        version they replace different content instead of answering "conflict". `epochs`: the owner
        epoch this worker holds per `topic:partition` (None: no ownership check, for tools and tests).
        Raises LedgerLost, FencedOut or LedgerUnavailable instead of answering.
        """
        if not items:
            return []
        _attempt, judged = self.check_chunks([items], attempt, positions, authoritative, epochs)
        return judged[0][1]  # one call: a repeat (which wrote nothing before) keeps the attempt

    def check_chunks(self, chunks: Iterable[Sequence[Item]], attempt: str, positions: Mapping[str, int],
                     authoritative: bool = False, epochs: Mapping[str, int] | None = None,
                     ) -> tuple[str, list[tuple[Sequence[Item], list[Verdict]]]]:
        """Fence chunk after chunk, with the verdicts one call for all of them would give (the script
        judges item by item, in order); returns the attempt the states were written under and each
        chunk with its verdicts.

        Pipelined: each chunk's call is sent as soon as `chunks` yields it, and replies are read only
        once all are sent, so Redis judges a chunk while the caller prepares the next (a lazy `chunks`
        parses its messages meanwhile). When a chunk could not be judged (Redis no longer knows the
        script) but others were, everything is judged again under a new attempt id: the script rolls
        the first attempt's states back like an aborted batch's.
        A lost connection is never retried here (the script may have run): LedgerUnavailable.
        """
        done: list[Sequence[Item]] = []
        source: Iterable[Sequence[Item]] = chunks
        for _pass in range(2):
            replies = self._pipelined(source, done, attempt, positions, authoritative, epochs)
            source, done = done, []
            if replies is not None:
                for reply in replies:  # a lost ledger or a zombie is answered first, whatever else came back
                    _raise_whole_answer(reply)
                return attempt, [(items, _verdicts(reply, self._codecs(items[0][0].api)) if items else [])
                                 for items, reply in zip(source, replies, strict=True)]
            self._load_script()  # Redis restarted or flushed its scripts
            if sum(1 for items in source if items) > 1:  # other calls of the pass may have written states
                attempt = f"{attempt}+"
        raise LedgerUnavailable("the ledger script could not judge the batch in two passes")

    def stream_chunks(self, chunks: Iterable[Sequence[Item]], attempt: str, positions: Mapping[str, int],
                      epochs: Mapping[str, int] | None = None) -> Iterator[tuple[Sequence[Item], list[Verdict]]]:
        """Each non-empty chunk with its verdicts as soon as Redis answered, in order, while the next chunk
        is already with Redis: the caller produces a chunk's messages while Redis judges the next one and
        a lazy `chunks` parses the one after. The verdicts are those of `check_chunks`, but a chunk that
        cannot be judged here raises Rejudge (the caller's earlier chunks are void) instead of being
        judged again; a lost connection raises LedgerUnavailable (the script may have run)."""
        if not self._script_loaded:  # a fresh Redis would answer the first call NOSCRIPT, voiding a chunk
            self._load_script()
        pool = self._redis.connection_pool
        conn = _connection(pool)
        sent: deque[Sequence[Item]] = deque()  # chunks whose replies are still to be read, oldest first
        try:
            for items in chunks:
                if not items:
                    continue
                keys, batch = self._batch(items, attempt, positions, False, epochs)
                conn.send_command("EVALSHA", self._script.sha, len(keys), *keys, orjson.dumps(batch))
                sent.append(items)
                if len(sent) > 1:
                    yield self._reply_to_oldest(conn, sent)
            while sent:
                yield self._reply_to_oldest(conn, sent)
        except NoScriptError:
            raise Rejudge("Redis no longer knows the fence script") from None
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise LedgerUnavailable(f"the Redis ledger did not answer: {exc}") from None
        finally:
            if sent:  # stopped early: replies still on their way would answer the connection's next user
                conn.disconnect()
            pool.release(conn)

    def _reply_to_oldest(self, conn: Any, sent: deque[Sequence[Item]]) -> tuple[Sequence[Item], list[Verdict]]:
        reply = orjson.loads(conn.read_response())
        items = sent.popleft()
        return items, _verdicts(reply, self._codecs(items[0][0].api))

    def _pipelined(self, chunks: Iterable[Sequence[Item]], done: list[Sequence[Item]], attempt: str,
                   positions: Mapping[str, int], authoritative: bool,
                   epochs: Mapping[str, int] | None) -> list[Any] | None:
        """One script call per chunk on one connection, all sent before any reply is read; the parsed
        replies (None for an empty chunk), or None when Redis does not know the script."""
        pool = self._redis.connection_pool
        conn = _connection(pool)
        try:
            calls = []
            for items in chunks:
                done.append(items)
                if items:
                    keys, batch = self._batch(items, attempt, positions, authoritative, epochs)
                    conn.send_command("EVALSHA", self._script.sha, len(keys), *keys, orjson.dumps(batch))
                calls.append(bool(items))
            return [orjson.loads(conn.read_response()) if called else None for called in calls]
        except NoScriptError:
            conn.disconnect()  # replies of the other calls may still be on their way
            return None
        except (RedisConnectionError, RedisTimeoutError) as exc:
            conn.disconnect()
            raise LedgerUnavailable(f"the Redis ledger did not answer: {exc}") from None
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _batch(self, items: Sequence[Item], attempt: str, positions: Mapping[str, int], authoritative: bool,
               epochs: Mapping[str, int] | None) -> tuple[list[str], dict[str, Any]]:
        """The script's KEYS (generation marker, judged offsets, key set, owner epochs, ledger keys once each)
        and its JSON argument."""
        api = items[0][0].api  # one api per call: the first three keys are its own
        keys, codec = self._api_keys(api), self._codecs(api)
        index: dict[str, int] = {}

        def slot(key: str) -> int:  # 1-based, as Lua indexes KEYS
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        owners = [] if epochs is None else [[slot(self.owner_key(tp)), str(epochs.get(tp, -1))]
                                            for tp in dict.fromkeys(source.tp for _obs, source in items)]
        rows = [[slot(self.ledger_key(obs.key)), str(obs.version), codec.pack_observation(obs), 1 if obs.deleted else 0,
                 source.tp, str(source.offset)] for obs, source in items]
        return keys, {"a": attempt, "p": dict(positions), "auth": 1 if authoritative else 0, "owners": owners,
                      "c": self._committed, "k": len(self._prefix) + 2, "items": rows}

    def expect_committed(self, committed: Mapping[str, int]) -> None:
        """The offsets Kafka has committed per `topic:partition` of the coming batch: every later call
        answers "lost" when the ledger has judged less of a partition (Redis lost writes Kafka kept)."""
        self._committed = dict(committed)

    def mark_judged(self, api: str, ends: Mapping[str, int], epochs: Mapping[str, int] | None = None) -> None:
        """Record that the batch is judged up to `ends` (offset after its last message per `topic:partition`),
        also where its last messages judged nothing (dead letters); call it after the batch's last verdict."""
        keys, owners = self._api_keys(api), []
        for tp in ends if epochs is not None else ():
            keys.append(self.owner_key(tp))
            owners.append([len(keys), str(epochs.get(tp, -1))])
        argument = {"a": "", "p": {}, "auth": 0, "owners": owners, "c": self._committed, "e": dict(ends),
                    "k": len(self._prefix) + 2, "items": []}
        try:
            _raise_whole_answer(orjson.loads(self._script(keys=keys, args=[orjson.dumps(argument)])))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise LedgerUnavailable(f"the Redis ledger did not answer: {exc}") from None

    def claim(self, tps: Iterable[str]) -> dict[str, int]:
        """Become the owner of these partitions: a new epoch each, which fences every earlier owner."""
        tps = list(tps)
        if not tps:
            return {}
        epochs = self._claim(keys=[self.owner_key(tp) for tp in tps])
        return dict(zip(tps, (int(e) for e in epochs), strict=True))

    def check(self, obs: Observation, source: SourcePosition, attempt: str,
              positions: Mapping[str, int]) -> Verdict:
        """Fence one observation."""
        return self.check_many([(obs, source)], attempt, positions)[0]


# A new owner epoch per key: above the stored one, and at least Redis's clock in milliseconds, so an
# epoch whose claim Redis lost (gone back in time) is never given to another owner.
_CLAIM = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local epochs = {}
for i, key in ipairs(KEYS) do
  epochs[i] = string.format('%d', math.max(tonumber(redis.call('GET', key) or '0') + 1, ms))
  redis.call('SET', key, epochs[i])
end
return epochs
"""


def _connection(pool: Any) -> Any:
    """A connection of the pool, for calls whose replies are read later."""
    try:
        return pool.get_connection()
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise LedgerUnavailable(f"the Redis ledger did not answer: {exc}") from None


def _script_source() -> str:
    return resources.files(__package__).joinpath("fence.lua").read_text(encoding="utf-8")


# The verdicts of keys without a state, made once (a backfill's every verdict is one of them)
_NEW_KEY = {status: Verdict(status) for status in ("accepted", "unchanged", "stale", "conflict")}


def _raise_whole_answer(reply: Any) -> None:
    """Raise the answer the script gives for a whole call instead of verdicts: lost or fenced."""
    if reply and reply[0] == "lost":
        raise LedgerLost(f"the Redis ledger lost data ({reply[1]}): it is rebuilt before anything is judged")
    if reply == ["fenced"]:
        raise FencedOut("another normalizer took over a partition of this batch (newer owner epoch)")


def _verdicts(replies: Sequence[Any], codec: StateCodec) -> list[Verdict]:
    """One chunk's reply as verdicts (states packed with `codec`), or the whole-chunk answer raised."""
    _raise_whole_answer(replies)
    return [_verdict(reply, codec) for reply in replies]


def _verdict(reply: Sequence[Any], codec: StateCodec) -> Verdict:
    """One item's reply: [status] for a new key, else [status, top data, top deleted (0/1), top version]."""
    if len(reply) == 1:
        return _NEW_KEY.get(reply[0]) or Verdict(reply[0])
    status, data, deleted, version = reply
    return Verdict(status, int(version), deleted == 1, data, codec)
