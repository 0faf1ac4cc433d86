"""Version fence: the Redis ledger that decides whether an observation may change a record.

One atomic Lua script per observation: accept a newer version, discard an older one ("stale"),
report "unchanged" when the content hash equals the stored one, and "conflict" when the version is
equal but the content differs (upstream stamps are whole seconds: arrival order must not decide; the
caller re-fetches and fences the server's state again as `authoritative`, which wins the tie). The ledger keeps the
last data per key, so the normalizer can diff without reading the records topic.

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
- **Generation marker (ledger loss).** `<prefix>:~generation:<api>` is set once the ledger is complete
  (fresh, or rebuilt from `<api>.records`). A Redis restarted empty or flushed has no marker, and the
  script answers "lost" instead of treating every key as new (which would accept stale versions and
  re-emit `created`): the normalizer rebuilds first (see `apisync.normalizer.ensure_ledger`).

States are compact: the data (keys sorted, so equal content packs to equal text, which is how
"unchanged" is decided) is raw-deflated and base85-encoded (no JSON escaping inside the stack), so a
key costs less than the object's own JSON.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from apisync.events import Observation

LEDGER_PREFIX = "apisync:ledger"


class LedgerLost(RuntimeError):
    """The ledger has no generation marker: Redis lost its data; rebuild before fencing anything."""


class FencedOut(RuntimeError):
    """Another normalizer owns this partition now (a newer owner epoch): this one is a zombie."""


_SCRIPT = """
-- KEYS: ledger key, owner epoch of the source partition, generation marker of the api.
-- ARGV: version, packed data, deleted (1/0), source tp, offset, attempt, batch start positions (JSON),
--       authoritative (1/0), owner epoch ('' = not checked).
if redis.call('EXISTS', KEYS[3]) == 0 then return {'lost', '', '', ''} end
if ARGV[9] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[9] then return {'fenced', '', '', ''} end
local raw = redis.call('GET', KEYS[1])
local entries = {}
if raw then entries = cjson.decode(raw) end
local version = tonumber(ARGV[1])
local attempt = ARGV[6]
local positions = cjson.decode(ARGV[7])
local function from_aborted_attempt(e)
  if e.a == attempt then return false end
  local pos = positions[e.t]
  return pos ~= nil and tonumber(e.o) >= pos
end
while #entries > 0 and from_aborted_attempt(entries[#entries]) do
  table.remove(entries)
end
local top = entries[#entries]
local status = 'accepted'
local push = true
if top then
  local top_version = tonumber(top.v)
  if version < top_version then
    status = 'stale'; push = false
  elseif version == top_version and top.x == 1 and ARGV[3] ~= '1' then
    status = 'stale'; push = false
  elseif top.x == tonumber(ARGV[3]) and top.d == ARGV[2] then
    status = 'unchanged'; push = version > top_version
  elseif version == top_version and top.x ~= 1 and ARGV[3] ~= '1' and ARGV[8] ~= '1' then
    status = 'conflict'; push = false
  end
end
if push then
  table.insert(entries, {v=ARGV[1], d=ARGV[2], x=tonumber(ARGV[3]), t=ARGV[4], o=ARGV[5], a=attempt})
  local keep_from = 1
  for i = #entries, 1, -1 do
    if entries[i].a ~= attempt then keep_from = i; break end
  end
  local kept = {}
  for i = keep_from, #entries do table.insert(kept, entries[i]) end
  entries = kept
end
if #entries == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], cjson.encode(entries))
end
if top then
  return {status, top.d, tostring(top.x), top.v}
end
return {status, '', '', ''}
"""


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where an observation was read: topic, partition, offset."""

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
    previous: dict[str, Any] | None  # last live data; None when the key is new or deleted
    previous_version: int | None
    previous_deleted: bool

    @property
    def accepted(self) -> bool:
        """True when the observation changes the record."""
        return self.status == "accepted"


class VersionFence:
    """The Redis ledger of one api: `apisync:ledger:<record key>` → stack of states."""

    def __init__(self, client: Any, prefix: str = LEDGER_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)

    def ledger_key(self, record_key: str) -> str:
        """The Redis key holding one record's states."""
        return f"{self._prefix}:{record_key}"

    def check_many(
        self,
        items: Sequence[tuple[Observation, SourcePosition]],
        attempt: str,
        positions: Mapping[str, int],
        authoritative: bool = False,
        epochs: Mapping[str, int] | None = None,
    ) -> list[Verdict]:
        """Fence every observation in order (one pipeline); positions = batch start per `topic:partition`.

        `authoritative`: the observations are the server's current state (re-fetched), so at an equal
        version they replace different content instead of answering "conflict". `epochs`: the owner
        epoch this worker holds per `topic:partition` (None: no ownership check, for tools and tests).
        Raises LedgerLost or FencedOut instead of answering.
        """
        if not items:
            return []
        encoded_positions = orjson.dumps(dict(positions)).decode()
        pipe = self._redis.pipeline(transaction=False)
        for obs, source in items:
            epoch = "" if epochs is None else str(epochs.get(source.tp, -1))
            args = _script_args(obs, source, attempt, encoded_positions) + ["1" if authoritative else "0", epoch]
            keys = [self.ledger_key(obs.key), self.owner_key(source.tp), self.generation_key(obs.api)]
            self._script(keys=keys, args=args, client=pipe)
        verdicts = [_verdict(reply) for reply in pipe.execute()]
        for verdict in verdicts:
            if verdict.status == "lost":
                raise LedgerLost("the Redis ledger has no generation marker: Redis lost its data")
            if verdict.status == "fenced":
                raise FencedOut("another normalizer took over a partition of this batch (newer owner epoch)")
        return verdicts

    def owner_key(self, tp: str) -> str:
        """Where the owner epoch of one source partition lives."""
        return f"{self._prefix}:~owner:{tp}"

    def generation_key(self, api: str) -> str:
        """The marker that says the ledger of one api is complete."""
        return f"{self._prefix}:~generation:{api}"

    def claim(self, tps: Iterable[str]) -> dict[str, int]:
        """Become the owner of these partitions: a new epoch each, which fences every earlier owner."""
        tps = list(tps)
        pipe = self._redis.pipeline(transaction=False)
        for tp in tps:
            pipe.incr(self.owner_key(tp))
        return dict(zip(tps, (int(e) for e in pipe.execute()), strict=True))

    def has_generation(self, api: str) -> bool:
        """True when the ledger of `api` is complete (not lost since it was built)."""
        return bool(self._redis.exists(self.generation_key(api)))

    def mark_generation(self, api: str, generation: str) -> None:
        """Declare the ledger of `api` complete (after a fresh start or a rebuild)."""
        self._redis.set(self.generation_key(api), generation)

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
            count += 1
            if count % chunk == 0:
                pipe.execute()
        pipe.execute()
        return count

    def clear(self, api: str) -> int:
        """Delete every ledger key of one api, and its generation marker; returns how many keys."""
        self._redis.delete(self.generation_key(api))
        removed = 0
        for key in self._redis.scan_iter(match=f"{self._prefix}:{api}.*", count=1000):
            removed += self._redis.delete(key)
        return removed


def pack(data: Any) -> str:
    """Object → compact, canonical text for the ledger (sorted keys, raw deflate, base85)."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return base64.b85encode(deflate.compress(raw) + deflate.flush()).decode()


def unpack(text: str) -> Any:
    """Ledger text → object; None for an empty state (a delete)."""
    return orjson.loads(zlib.decompress(base64.b85decode(text), -15)) if text else None


def _packed_data(obs: Observation) -> str:
    return pack(obs.data) if obs.data is not None and not obs.deleted else ""


def _script_args(obs: Observation, source: SourcePosition, attempt: str, positions: str) -> list[str]:
    deleted = "1" if obs.deleted else "0"
    return [str(obs.version), _packed_data(obs), deleted, source.tp, str(source.offset), attempt, positions]


def _entry(obs: Observation, tp: str, offset: int, attempt: str) -> dict[str, Any]:
    return {"v": str(obs.version), "d": _packed_data(obs), "x": 1 if obs.deleted else 0,
            "t": tp, "o": str(offset), "a": attempt}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _verdict(reply: Sequence[Any]) -> Verdict:
    status, data, deleted, version = (_text(v) for v in reply)
    if version == "":
        return Verdict(status, None, None, False)
    is_deleted = deleted == "1"
    previous = unpack(data) if data and not is_deleted else None
    return Verdict(status, previous, int(version), is_deleted)
