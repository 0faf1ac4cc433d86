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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from apisync.events import Observation

LEDGER_PREFIX = "apisync:ledger"

_SCRIPT = """
local raw = redis.call('GET', KEYS[1])
local entries = {}
if raw then entries = cjson.decode(raw) end
local version = tonumber(ARGV[1])
local attempt = ARGV[7]
local positions = cjson.decode(ARGV[8])
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
  elseif version == top_version and top.x == 1 and ARGV[4] ~= '1' then
    status = 'stale'; push = false
  elseif top.h == ARGV[2] then
    status = 'unchanged'; push = version > top_version
  elseif version == top_version and top.x ~= 1 and ARGV[4] ~= '1' and ARGV[9] ~= '1' then
    status = 'conflict'; push = false
  end
end
if push then
  table.insert(entries, {v=ARGV[1], h=ARGV[2], d=ARGV[3], x=tonumber(ARGV[4]), t=ARGV[5], o=ARGV[6], a=attempt})
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

    status: str  # accepted | unchanged | stale | conflict
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
    ) -> list[Verdict]:
        """Fence every observation in order (one pipeline); positions = batch start per `topic:partition`.

        `authoritative`: the observations are the server's current state (re-fetched), so at an equal
        version they replace different content instead of answering "conflict".
        """
        if not items:
            return []
        encoded_positions = orjson.dumps(dict(positions)).decode()
        pipe = self._redis.pipeline(transaction=False)
        for obs, source in items:
            args = _script_args(obs, source, attempt, encoded_positions) + ["1" if authoritative else "0"]
            self._script(keys=[self.ledger_key(obs.key)], args=args, client=pipe)
        return [_verdict(reply) for reply in pipe.execute()]

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
        data = orjson.loads(top["d"]) if top["d"] else None
        return {"version": int(top["v"]), "deleted": top["x"] == 1, "data": data}

    def write_committed(self, states: Iterable[Observation]) -> int:
        """Overwrite keys with one committed state each (ledger rebuild); returns how many."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for obs in states:
            entry = _entry(obs, tp="", offset=0, attempt="rebuild")
            pipe.set(self.ledger_key(obs.key), orjson.dumps([entry]))
            count += 1
        pipe.execute()
        return count

    def clear(self, api: str) -> int:
        """Delete every ledger key of one api; returns how many."""
        removed = 0
        for key in self._redis.scan_iter(match=f"{self._prefix}:{api}.*", count=1000):
            removed += self._redis.delete(key)
        return removed


def _data_json(obs: Observation) -> str:
    return orjson.dumps(obs.data).decode() if obs.data is not None and not obs.deleted else ""


def _script_args(obs: Observation, source: SourcePosition, attempt: str, positions: str) -> list[str]:
    deleted = "1" if obs.deleted else "0"
    return [str(obs.version), obs.content_hash(), _data_json(obs), deleted,
            source.tp, str(source.offset), attempt, positions]


def _entry(obs: Observation, tp: str, offset: int, attempt: str) -> dict[str, Any]:
    return {"v": str(obs.version), "h": obs.content_hash(), "d": _data_json(obs),
            "x": 1 if obs.deleted else 0, "t": tp, "o": str(offset), "a": attempt}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _verdict(reply: Sequence[Any]) -> Verdict:
    status, data, deleted, version = (_text(v) for v in reply)
    if version == "":
        return Verdict(status, None, None, False)
    is_deleted = deleted == "1"
    previous = orjson.loads(data) if data and not is_deleted else None
    return Verdict(status, previous, int(version), is_deleted)
