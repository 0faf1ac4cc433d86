"""Which parser and signature scheme a webhook of one api goes through: the api's spec decides.

`parse_webhook`, `webhook_key` and `delivery_id` serve the receiver and the normalizer; `scheme_for`
gives the receiver the api's signature check with its active secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from apisync.events import Observation, ObservationError
from apisync.registry import WebhookSpec, spec_for
from apisync.webhooks.signatures import DEFAULT_TOLERANCE_S


def _webhook(api: str) -> WebhookSpec:
    try:
        webhook = spec_for(api).webhook
    except KeyError:
        webhook = None
    if webhook is None:
        raise ObservationError(f"no webhooks for api {api!r}")
    return webhook


def parse_webhook(api: str, body: bytes, headers: Mapping[str, str], synced_at: str = "",
                  **options: Any) -> Observation:
    """The api's parser (options: e.g. Stripe's pinned `api_version`); ObservationError if unusable."""
    return _webhook(api).parse(body, headers, synced_at, **options)


def scheme_for(api: str, secrets: Sequence[str], tolerance_s: int = DEFAULT_TOLERANCE_S):
    """The signature scheme the api's provider uses, with its active secrets."""
    try:
        return _webhook(api).scheme(tuple(secrets), tolerance_s)
    except ObservationError:
        raise KeyError(f"no webhook signature scheme for api {api!r}") from None


def delivery_id(api: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """The provider's delivery id: its spec's header, else Standard Webhooks' webhook-id, else the body's id."""
    lowered = {k.lower(): v for k, v in headers.items()}
    header = _webhook(api).delivery_header
    if header:
        return lowered.get(header)
    if "webhook-id" in lowered:
        return lowered["webhook-id"]
    try:
        event_id = orjson.loads(body).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return event_id if isinstance(event_id, str) else None


def split_delivery(api: str, body: bytes) -> list[bytes]:
    """One body per change: as delivered, unless the api's provider batches changes (`WebhookSpec.split`)."""
    split = _webhook(api).split
    return [body] if split is None else split(body)


def webhook_key(api: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """Kafka key for `<api>.webhooks`: the record key if the payload names the object, else the delivery id."""
    try:
        return parse_webhook(api, body, headers).key
    except ObservationError:
        return delivery_id(api, body, headers)
