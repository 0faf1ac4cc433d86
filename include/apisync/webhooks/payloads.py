"""What every API's webhook parser shares: the body as one JSON object, the headers by lower-case name.

The parsers themselves (raw body → Observation) live in each API's package (`apisync.apis.<api>.webhook`);
each spec names its own, and `webhooks.dispatch` picks it by api.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from apisync.events import ObservationError


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers keyed by lower-case name."""
    return {k.lower(): v for k, v in headers.items()}


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; ObservationError otherwise."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ObservationError("webhook body is not JSON") from None
    if not isinstance(doc, dict):
        raise ObservationError("webhook body is not a JSON object")
    return doc
