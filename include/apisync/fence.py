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

States are compact and cheap to write: "~", the first 16 hex digits of the content hash (sha256 of
the data with keys sorted, the same hash the event ids use), then the data lz4-compressed with a
preset dictionary of the APIs' field names, URL-safe base64-encoded (no JSON escaping inside the
stack). Equal content is decided on the hash prefix alone, so the compressed bytes never have to be
reproducible. A key costs well under the object's own JSON.
States packed by an older apisync compare correctly too: "." states (raw deflate with the same
dictionary, equal content = equal text; deflate's set-up cost more than the rest of the fence) and,
before those, base85 with no marker. When the script meets one where the answer depends on it, it
writes nothing and asks for the batch's data in those encodings too ("old_encoding"), so an upgrade
never turns "unchanged" into "conflict". Such states disappear as their keys are written again.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import lz4.block
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apisync.events import Observation

LEDGER_PREFIX = "apisync:ledger"
Item = tuple[Observation, "SourcePosition"]  # an observation and where it was read


class LedgerLost(RuntimeError):
    """Redis lost ledger data (all of it, or writes Kafka kept, or keys): rebuild before fencing anything."""


class FencedOut(RuntimeError):
    """Another normalizer owns this partition now (a newer owner epoch): this one is a zombie."""


class Rejudge(RuntimeError):
    """A streamed judgement cannot go on (a state packed by an older apisync decides, or Redis no
    longer knows the script): the caller drops what it did with earlier chunks and judges the whole
    batch with `VersionFence.check_chunks` under a new attempt, which rolls the first one's states back."""


class LedgerUnavailable(RuntimeError):
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

    @property
    def previous(self) -> dict[str, Any] | None:
        """Last live data; None when the key is new or deleted (unpacked on use: most verdicts never need it)."""
        return unpack(self.previous_packed) if self.previous_packed and not self.previous_deleted else None

    @property
    def accepted(self) -> bool:
        """True when the observation changes the record."""
        return self.status == "accepted"


class VersionFence:
    """The Redis ledger of one api: `apisync:ledger:<record key>` → stack of states."""

    def __init__(self, client: Any, prefix: str = LEDGER_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
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

    def ledger_key(self, record_key: str) -> str:
        """The Redis key holding one record's states."""
        return f"{self._prefix}:{record_key}"

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
        parses its messages meanwhile). When a chunk could not be judged (a state in an older encoding
        decides, or Redis no longer knows the script) but others were, everything is judged again under
        a new attempt id: the script rolls the first attempt's states back like an aborted batch's.
        A lost connection is never retried here (the script may have run): LedgerUnavailable.
        """
        done: list[Sequence[Item]] = []
        source: Iterable[Sequence[Item]] = chunks
        older = False
        for _pass in range(3):
            replies = self._pipelined(source, done, attempt, positions, authoritative, epochs, older)
            source, done = done, []
            if replies is None:  # Redis restarted or flushed its scripts
                self._load_script()
            else:
                for reply in replies:  # a lost ledger or a zombie is answered first, whatever else came back
                    _raise_whole_answer(reply)
                if ["old_encoding"] not in replies:
                    return attempt, [(items, _verdicts(reply) if items else [])
                                     for items, reply in zip(source, replies, strict=True)]
                older = True  # a state packed by an older apisync decides: send those encodings too
            if sum(1 for items in source if items) > 1:  # other calls of the pass may have written states
                attempt = f"{attempt}+"
        raise LedgerUnavailable("the ledger script could not judge the batch in three passes")

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

    @staticmethod
    def _reply_to_oldest(conn: Any, sent: deque[Sequence[Item]]) -> tuple[Sequence[Item], list[Verdict]]:
        reply = orjson.loads(conn.read_response())
        items = sent.popleft()
        if reply == ["old_encoding"]:
            raise Rejudge("a ledger state packed by an older apisync decides a verdict")
        return items, _verdicts(reply)

    def _pipelined(self, chunks: Iterable[Sequence[Item]], done: list[Sequence[Item]], attempt: str,
                   positions: Mapping[str, int], authoritative: bool, epochs: Mapping[str, int] | None,
                   older: bool) -> list[Any] | None:
        """One script call per chunk on one connection, all sent before any reply is read; the parsed
        replies (None for an empty chunk), or None when Redis does not know the script."""
        pool = self._redis.connection_pool
        conn = _connection(pool)
        try:
            calls = []
            for items in chunks:
                done.append(items)
                if items:
                    keys, batch = self._batch(items, attempt, positions, authoritative, epochs, older)
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
               epochs: Mapping[str, int] | None, older: bool = False) -> tuple[list[str], dict[str, Any]]:
        """The script's KEYS (generation marker, judged offsets, key set, owner epochs, ledger keys once each)
        and its JSON argument (with `older`, each item's data in the encodings of older apisync versions too)."""
        keys = self._api_keys(items[0][0].api)
        index: dict[str, int] = {}

        def slot(key: str) -> int:  # 1-based, as Lua indexes KEYS
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        owners = [] if epochs is None else [[slot(self.owner_key(tp)), str(epochs.get(tp, -1))]
                                            for tp in dict.fromkeys(source.tp for _obs, source in items)]
        rows = [[slot(self.ledger_key(obs.key)), str(obs.version), _packed_data(obs), 1 if obs.deleted else 0,
                 source.tp, str(source.offset)] for obs, source in items]
        if older:
            for row, (obs, _source) in zip(rows, items, strict=True):
                row.append(_older_encodings(obs))
        return keys, {"a": attempt, "p": dict(positions), "auth": 1 if authoritative else 0, "owners": owners,
                      "c": self._committed, "k": len(self._prefix) + 2, "items": rows}

    def _api_keys(self, api: str) -> list[str]:
        return [self.generation_key(api), self.judged_key(api), self.keyset_key(api)]

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

    def owner_key(self, tp: str) -> str:
        """Where the owner epoch of one source partition lives."""
        return f"{self._prefix}:~owner:{tp}"

    def generation_key(self, api: str) -> str:
        """The marker that says the ledger of one api is complete."""
        return f"{self._prefix}:~generation:{api}"

    def judged_key(self, api: str) -> str:
        """The hash of offsets the ledger of one api has judged up to, per source partition."""
        return f"{self._prefix}:~judged:{api}"

    def keyset_key(self, api: str) -> str:
        """The set of record keys the ledger of one api holds states for (and "~", so it is never empty)."""
        return f"{self._prefix}:~keys:{api}"

    def claim(self, tps: Iterable[str]) -> dict[str, int]:
        """Become the owner of these partitions: a new epoch each, which fences every earlier owner."""
        tps = list(tps)
        if not tps:
            return {}
        epochs = self._claim(keys=[self.owner_key(tp) for tp in tps])
        return dict(zip(tps, (int(e) for e in epochs), strict=True))

    def has_generation(self, api: str) -> bool:
        """True when the ledger of `api` is complete (not lost since it was built)."""
        return bool(self._redis.exists(self.generation_key(api)))

    def mark_generation(self, api: str, generation: str, judged: Mapping[str, int] | None = None) -> None:
        """Declare the ledger of `api` complete (after a fresh start or a rebuild), with the offsets it covers
        per source partition (`judged`: Kafka's committed offsets read before the rebuild began)."""
        pipe = self._redis.pipeline(transaction=True)  # one MULTI: a Redis that keeps the marker keeps these
        pipe.delete(self.judged_key(api))
        pipe.hset(self.judged_key(api), mapping={"~generation": generation, **(judged or {})})
        pipe.sadd(self.keyset_key(api), "~")
        pipe.set(self.generation_key(api), generation)
        pipe.execute()

    def forget_generation(self, api: str) -> None:
        """Declare the ledger of `api` incomplete: the fence refuses everything until a rebuild marks it again."""
        self._redis.delete(self.generation_key(api))

    def index_keys(self, api: str, chunk: int = 1000, progress: Callable[[], Any] | None = None) -> int:
        """Make the key set name exactly the ledger keys Redis holds (during a rebuild), calling `progress`
        after each chunk; returns how many."""
        keyset, start, count = self.keyset_key(api), len(self._prefix) + 1, 0
        self._redis.delete(keyset)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(keyset, "~")
        for key in self._redis.scan_iter(match=f"{self._prefix}:{api}.*", count=chunk):
            pipe.sadd(keyset, key[start:])
            count += 1
            if count % chunk == 0:
                pipe.execute()
                if progress is not None:
                    progress()
        pipe.execute()
        return count

    def check(self, obs: Observation, source: SourcePosition, attempt: str,
              positions: Mapping[str, int]) -> Verdict:
        """Fence one observation."""
        return self.check_many([(obs, source)], attempt, positions)[0]

    def current(self, record_key: str) -> dict[str, Any] | None:
        """The newest state of a key: {version, deleted, data} (for tests and operators)."""
        raw = self._redis.get(self.ledger_key(record_key))
        if raw is None:
            return None
        top = orjson.loads(raw)[-1]
        return {"version": int(top["v"]), "deleted": top["x"] == 1, "data": unpack(top["d"])}

    def write_committed(self, states: Iterable[Observation], chunk: int = 1000) -> int:
        """Overwrite keys with one committed state each (ledger rebuild), in pipelined chunks; returns how many."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for obs in states:
            entry = _entry(obs, tp="", offset=0, attempt="rebuild")
            pipe.set(self.ledger_key(obs.key), orjson.dumps([entry]))
            pipe.sadd(self.keyset_key(obs.api), obs.key)
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count

    def clear(self, api: str) -> int:
        """Delete every ledger key of one api, its generation marker, offsets and key set; returns how many keys."""
        self._redis.delete(self.generation_key(api), self.judged_key(api), self.keyset_key(api))
        removed = 0
        for key in self._redis.scan_iter(match=f"{self._prefix}:{api}.*", count=1000):
            removed += self._redis.delete(key)
        return removed


# Field names of the three APIs' objects, a preset dictionary for the compressor, so a key's names
# cost a back-reference each: a ~420 B Stripe customer packs to ~230 B instead of ~320 B. NEVER edit:
# "~" and "." states decode only with these exact bytes; another dictionary needs another marker.
_FIELDS_V1 = (
    "AccountId", "Amount", "AnnualRevenue", "BillingCity", "BillingCountry", "CloseDate", "CreatedById",
    "CreatedDate", "Email", "FirstName", "Id", "Industry", "IsClosed", "IsDeleted", "IsWon", "LastModifiedById",
    "LastModifiedDate", "LastName", "Name", "NumberOfEmployees", "OwnerId", "Phone", "Probability", "StageName",
    "SystemModstamp", "Title", "Type", "Website", "address", "amount", "amount_captured", "amount_due",
    "amount_paid", "amount_refunded", "amount_remaining", "assignee", "assignees", "attempt_count", "attempted",
    "attributes", "author_association", "balance", "base", "body", "cancel_at_period_end", "canceled_at",
    "captured", "closed_at", "comments", "comments_url", "created", "created_at", "currency", "current_period_end",
    "current_period_start", "customer", "data", "default_source", "delinquent", "description", "diff_url", "draft",
    "email", "ended_at", "failure_code", "failure_message", "has_more", "head", "html_url", "id", "interval",
    "invoice", "invoice_prefix", "issue_url", "items", "label", "labels", "livemode", "locked", "login",
    "merge_commit_sha", "merged_at", "metadata", "milestone", "name", "node_id", "number", "object", "paid",
    "patch_url", "pending_update", "phone", "preferred_locales", "price", "quantity", "recurring", "ref",
    "refunded", "repository_url", "requested_reviewers", "sha", "shipping", "state", "state_reason", "status",
    "subscription", "tax_exempt", "test_clock", "title", "total", "type", "unit_amount", "updated_at", "url",
    "user",
)
_ZDICT_V1 = "".join(f'"{name}":' for name in _FIELDS_V1).encode()
HASHED_STATE = "~"  # marker of the current encoding
_HASH_DIGITS = 16  # of the sha256 content hash: what equality is decided on


def pack(data: Any) -> str:
    """Object → ledger text: "~", 16 hex digits of the content hash, URL-safe base64 of the lz4-compressed
    canonical JSON (sorted keys, preset dictionary). No character of it needs escaping in the script's JSON."""
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return _pack_canonical(canonical, hashlib.sha256(canonical).hexdigest())


def _pack_canonical(canonical: bytes, content_hash: str) -> str:
    compressed = lz4.block.compress(canonical, dict=_ZDICT_V1, store_size=True)
    return HASHED_STATE + content_hash[:_HASH_DIGITS] + base64.urlsafe_b64encode(compressed).decode()


def pack_deflate(data: Any) -> str:
    """The "." encoding of apisync before "~" states (equal content = equal text), for comparisons only."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V1)
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return "." + base64.urlsafe_b64encode(deflate.compress(raw) + deflate.flush()).decode()


def pack_b85(data: Any) -> str:
    """The encoding of apisync before "." states: base85 of the same deflate stream (for comparisons only)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return base64.b85encode(deflate.compress(raw) + deflate.flush()).decode()


def unpack(text: str) -> Any:
    """Ledger text (any encoding) → object; None for an empty state (a delete)."""
    if not text:
        return None
    if text[0] == HASHED_STATE:
        compressed = base64.urlsafe_b64decode(text[1 + _HASH_DIGITS:])
        return orjson.loads(lz4.block.decompress(compressed, dict=_ZDICT_V1))
    if text[0] == ".":
        inflate = zlib.decompressobj(-15, _ZDICT_V1)
        return orjson.loads(inflate.decompress(base64.urlsafe_b64decode(text[1:])) + inflate.flush())
    return orjson.loads(zlib.decompress(base64.b85decode(text), -15))


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


def _packed_data(obs: Observation) -> str:
    if obs.data is None or obs.deleted:
        return ""
    return _pack_canonical(obs.canonical_json(), obs.content_hash())


def _older_encodings(obs: Observation) -> list[str]:
    """The item's data as older apisync versions packed it: ["." deflate, base85] (the script picks one)."""
    if obs.data is None or obs.deleted:
        return ["", ""]
    return [pack_deflate(obs.data), pack_b85(obs.data)]


def _entry(obs: Observation, tp: str, offset: int, attempt: str) -> dict[str, Any]:
    return {"v": str(obs.version), "d": _packed_data(obs), "x": 1 if obs.deleted else 0,
            "t": tp, "o": str(offset), "a": attempt}


# The verdicts of keys without a state, made once (a backfill's every verdict is one of them)
_NEW_KEY = {status: Verdict(status) for status in ("accepted", "unchanged", "stale", "conflict")}


def _raise_whole_answer(reply: Any) -> None:
    """Raise the answer the script gives for a whole call instead of verdicts: lost or fenced."""
    if reply and reply[0] == "lost":
        raise LedgerLost(f"the Redis ledger lost data ({reply[1]}): it is rebuilt before anything is judged")
    if reply == ["fenced"]:
        raise FencedOut("another normalizer took over a partition of this batch (newer owner epoch)")


def _verdicts(replies: Sequence[Any]) -> list[Verdict]:
    """One chunk's reply as verdicts, or the whole-chunk answer raised."""
    _raise_whole_answer(replies)
    return [_verdict(reply) for reply in replies]


def _verdict(reply: Sequence[Any]) -> Verdict:
    """One item's reply: [status] for a new key, else [status, top data, top deleted (0/1), top version]."""
    if len(reply) == 1:
        return _NEW_KEY.get(reply[0]) or Verdict(reply[0])
    status, data, deleted, version = reply
    return Verdict(status, int(version), deleted == 1, data)
