"""Ledger states: how the version fence stores one record's data in Redis, compact and cheap to write.

A state is "~", the first 16 hex digits of the content hash (sha256 of the data with keys sorted, the
same hash the event ids use), then the data lz4-compressed with a preset dictionary, URL-safe
base64-encoded (no character of it needs escaping in the fence script's JSON stack). Equal content is
decided on the hash prefix alone (`fence.lua` compares the first 17 characters), so the compressed
bytes never have to be reproducible. A key costs well under the object's own JSON.

The dictionary is the API's own: `ApiSpec.ledger_fields`, its objects' field names, so a key's names
cost a back-reference each. A state decodes only with the dictionary it was packed with, which is why
an API's `ledger_fields` never change once its ledger holds data.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Any

import lz4.block
import orjson

from apisync.events import Observation
from apisync.registry import spec_for

HASHED_STATE = "~"  # the marker every state begins with
HASH_DIGITS = 16  # of the sha256 content hash: what equality is decided on


def preset_dictionary(fields: Iterable[str]) -> bytes:
    """The compressor's preset dictionary for these field names: each as it appears in canonical JSON."""
    return "".join(f'"{name}":' for name in fields).encode()


class StateCodec:
    """Packs and unpacks the ledger states of one API, with that API's preset dictionary."""

    __slots__ = ("dictionary", "fields")

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.dictionary = preset_dictionary(fields)

    def pack(self, data: Any) -> str:
        """Object → ledger text: "~", 16 hex digits of the content hash, URL-safe base64 of the
        lz4-compressed canonical JSON (sorted keys)."""
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        return self.pack_canonical(canonical, hashlib.sha256(canonical).hexdigest())

    def pack_canonical(self, canonical: bytes, content_hash: str) -> str:
        """`pack` of data already dumped canonically and hashed (an observation keeps both)."""
        compressed = lz4.block.compress(canonical, dict=self.dictionary, store_size=True)
        return HASHED_STATE + content_hash[:HASH_DIGITS] + base64.urlsafe_b64encode(compressed).decode()

    def pack_observation(self, obs: Observation) -> str:
        """An observation's data as a ledger state ("" for a delete), from the canonical JSON and hash it keeps."""
        if obs.data is None or obs.deleted:
            return ""
        return self.pack_canonical(obs.canonical_json(), obs.content_hash())

    def unpack(self, text: str) -> Any:
        """Ledger text → object; None for an empty state (a delete)."""
        if not text:
            return None
        compressed = base64.urlsafe_b64decode(text[1 + HASH_DIGITS:])
        return orjson.loads(lz4.block.decompress(compressed, dict=self.dictionary))


_CODECS: dict[str, StateCodec] = {}


def codec_for(api: str) -> StateCodec:
    """The codec of a registered API, built once from its spec's `ledger_fields` (and again when the API
    is registered anew, as tests do)."""
    fields = spec_for(api).ledger_fields
    codec = _CODECS.get(api)
    if codec is None or codec.fields is not fields:
        codec = _CODECS[api] = StateCodec(fields)
    return codec
