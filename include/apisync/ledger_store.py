"""The ledger's Redis keys, and the writes and reads of whole states outside the fence script.

`apisync.fence.VersionFence` judges observations with its Lua script; the ledger's layout and upkeep are
here: the key of each record's state stack (`<prefix>:<api>.<collection>.<id>`), of the owner epochs,
generation marker, judged offsets and key set (see the fence's docstring for what each guards), their
marking and indexing during a rebuild, one committed state per key for rebuilds and the audit, and
the newest state of a key for tools. States are packed with the codec of their api
(`apisync.ledger_states`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from apisync.events import Observation
from apisync.ledger_states import StateCodec, codec_for

LEDGER_PREFIX = "apisync:ledger"


class LedgerStore:
    """The Redis keys of the ledger under one prefix, and their upkeep.

    `codecs`: api → the StateCodec its states are packed with (default: from the API registry).
    """

    def __init__(self, client: Any, prefix: str = LEDGER_PREFIX,
                 codecs: Callable[[str], StateCodec] = codec_for) -> None:
        self._redis = client
        self._prefix = prefix
        self._codecs = codecs

    def ledger_key(self, record_key: str) -> str:
        """The Redis key holding one record's states."""
        return f"{self._prefix}:{record_key}"

    def _api_keys(self, api: str) -> list[str]:
        return [self.generation_key(api), self.judged_key(api), self.keyset_key(api)]

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

    def current(self, record_key: str) -> dict[str, Any] | None:
        """The newest state of a key: {version, deleted, data} (for tests and operators)."""
        raw = self._redis.get(self.ledger_key(record_key))
        if raw is None:
            return None
        top = orjson.loads(raw)[-1]
        return {"version": int(top["v"]), "deleted": top["x"] == 1, "data": self.unpack(record_key, top["d"])}

    def unpack(self, record_key: str, packed: str) -> Any:
        """A state's data as the ledger of `record_key` holds it → object (None for a delete)."""
        return self._codecs(record_key.partition(".")[0]).unpack(packed)  # keys are `<api>.<collection>.<id>`

    def entry(self, obs: Observation, tp: str, offset: int, attempt: str) -> dict[str, Any]:
        """The ledger state of an observation read at (`tp`, `offset`), written by `attempt`."""
        return {"v": str(obs.version), "d": self._codecs(obs.api).pack_observation(obs),
                "x": 1 if obs.deleted else 0, "t": tp, "o": str(offset), "a": attempt}

    def write_committed(self, states: Iterable[Observation], chunk: int = 1000) -> int:
        """Overwrite keys with one committed state each (ledger rebuild), in pipelined chunks; returns how many."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        for obs in states:
            entry = self.entry(obs, tp="", offset=0, attempt="rebuild")
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
