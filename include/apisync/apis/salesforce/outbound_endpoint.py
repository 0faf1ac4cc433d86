"""The receiver's Outbound Messaging endpoint: `POST /webhooks/salesforce/outbound-messages/<secret>`.

Mounted by the receiver through the spec (`WebhookSpec.extra_routes`). Order of checks: endpoint
configured, i.e. organisations and path secrets set (else 404) → sender address in the allow-list, when
one is set (403) → path secret one of the configured ones (401; also without one) → body size (413) →
well-formed notifications (400) → OrganizationId one of the configured organisations (403) → one Kafka
message per notification, all acknowledged (else 503) → the SOAP `Ack`. Faults are SOAP Fault bodies;
Salesforce retries anything it did not get an Ack for (see `outbound_messaging`). The path secret is the
only secret an Outbound Message can carry (its endpoint URL); `RedactPathSecret` keeps it out of the ASGI
server's access log.

Settings (`WebhookSettings.api_options["salesforce"]`, from the environment by `options_from_env`):
`organization_ids` (APISYNC_SALESFORCE_ORG_IDS: organisations whose messages are accepted, an identity
check, not secrets), `outbound_secrets` (APISYNC_SALESFORCE_OUTBOUND_SECRETS: the path secrets, several
during a rotation; without one the endpoint is off) and `outbound_allowed_ips`
(APISYNC_SALESFORCE_OUTBOUND_ALLOWED_IPS: networks, CIDR, messages may come from, e.g. Salesforce's
published ranges; empty: any), each comma-separated.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

import apisync.apis.salesforce.outbound_messaging as om
from apisync.connections import listed
from apisync.formats import epoch_to_iso
from apisync.webhooks.context import BodyTooLarge, ReceiverContext

log = logging.getLogger("apisync.webhooks")

OUTBOUND_PATH = "/webhooks/salesforce/outbound-messages"
ENV_OPTIONS = {"organization_ids": "APISYNC_SALESFORCE_ORG_IDS",
               "outbound_secrets": "APISYNC_SALESFORCE_OUTBOUND_SECRETS",
               "outbound_allowed_ips": "APISYNC_SALESFORCE_OUTBOUND_ALLOWED_IPS"}


@dataclass(frozen=True, slots=True)
class OutboundOptions:
    """Who may post Outbound Messages: organisations, path secrets, sender networks."""

    organization_ids: tuple[str, ...] = ()
    outbound_secrets: tuple[str, ...] = field(default=(), repr=False)
    outbound_allowed_ips: tuple[str, ...] = ()

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> OutboundOptions:
        """From the receiver's options of this API (missing ones: empty)."""
        return cls(**{name: tuple(options.get(name, ())) for name in ENV_OPTIONS})


def options_from_env(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The endpoint's options from APISYNC_SALESFORCE_ORG_IDS, ..._OUTBOUND_SECRETS, ..._OUTBOUND_ALLOWED_IPS."""
    return {name: listed(env.get(variable, "")) for name, variable in ENV_OPTIONS.items()}


class RedactPathSecret(logging.Filter):
    """Masks the Outbound Messaging path secret in access-log lines (uvicorn passes the path as an arg)."""

    _SECRET = re.compile(r"(/salesforce/outbound-messages/)[^/?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._SECRET.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._SECRET.sub(r"\1***", record.msg)
        return True


def _redact_access_log() -> None:
    """Install `RedactPathSecret` on the ASGI server's access logger, once."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactPathSecret) for f in access.filters):
        access.addFilter(RedactPathSecret())


def _soap(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type=om.CONTENT_TYPE)


def _fault(status: int, message: str) -> Response:
    return _soap(status, om.fault_body("Server" if status >= 500 else "Client", message))


def _notification_items(message: om.OutboundMessage, received_at: str) -> list[tuple]:
    """(key, single-notification body, Kafka headers) per notification; key = record key, else its Id."""
    items = []
    for note in message.notifications:
        headers = [("content-type", om.CONTENT_TYPE.encode()), (om.RECEIVED_AT_HEADER, received_at.encode()),
                   ("apisync-notification-id", note.id.encode()), ("apisync-action-id", message.action_id.encode())]
        items.append((note.record_key or note.id, om.single_notification_body(message, note), headers))
    return items


def _outbound_refusal(request: Request, options: OutboundOptions, networks: tuple) -> Response | None:
    """The fault for a request not from a configured sender (endpoint, allow-list, path secret), else None."""
    if not options.organization_ids or not options.outbound_secrets:
        return _fault(404, "no Outbound Messaging endpoint: configure the Salesforce organization_id "
                           "and an outbound messaging path secret")
    host = request.client.host if request.client else None
    if not om.sender_allowed(host, networks):
        log.warning("rejected Salesforce Outbound Message from %s: not in the allowed networks", host)
        return _fault(403, "sender address is not in the allowed networks")
    if not om.path_secret_matches(request.path_params.get("secret", ""), options.outbound_secrets):
        log.warning("rejected Salesforce Outbound Message from %s: the endpoint URL's path secret is missing "
                    "or wrong", host)
        return _fault(401, "the endpoint URL lacks the configured path secret")
    return None


@functools.lru_cache(maxsize=8)
def _networks(allowed_ips: tuple[str, ...]) -> tuple:
    """The parsed allow-list, once per distinct setting (the options are read per request)."""
    return om.allowed_networks(allowed_ips)


def mount_outbound_messaging(app: FastAPI, context: ReceiverContext) -> None:
    """POST /webhooks/salesforce/outbound-messages/<secret>: SOAP in, one message per notification, Ack out.
    The options are read per request: a path secret set later (e.g. in the connection) needs no restart."""
    _redact_access_log()

    async def receive_outbound(request: Request) -> Response:
        answer, stored = await _receive_outbound(request)
        context.answered(answer.status_code, stored)
        return answer

    # Without a secret too: a URL that lacks it gets a fault that says so, not a bare 404.
    app.add_route(OUTBOUND_PATH, receive_outbound, methods=["POST"])
    app.add_route(OUTBOUND_PATH + "/{secret}", receive_outbound, methods=["POST"])

    async def _receive_outbound(request: Request) -> tuple[Response, int]:
        options = OutboundOptions.of(context.options)
        try:
            networks = _networks(options.outbound_allowed_ips)
        except ValueError as exc:  # our setting is wrong, not the message: no Ack, Salesforce retries it later
            log.error("Salesforce Outbound Messaging allow-list (outbound_allowed_ips): %s", exc)
            return _fault(503, "the receiver's allowed sender networks are misconfigured"), 0
        refusal = _outbound_refusal(request, options, networks)
        if refusal is not None:
            return refusal, 0
        try:
            message = om.parse_envelope(await context.read_body(request))
        except BodyTooLarge:
            return _fault(413, f"body larger than {context.settings.max_body_bytes} bytes"), 0
        except om.OutboundMessageError as exc:
            log.warning("rejected Salesforce Outbound Message: %s", exc)
            return _fault(400, str(exc)), 0
        if not om.same_org(message.organization_id, options.organization_ids):
            log.warning("rejected Salesforce Outbound Message from organisation %s (not configured)",
                        message.organization_id[:18])
            return _fault(403, "OrganizationId is not a configured Salesforce organisation"), 0
        items = _notification_items(message, epoch_to_iso(context.settings.clock()))
        try:
            await context.sink.send_all(context.topic, items)
        except Exception as exc:  # any Kafka trouble: no Ack, so Salesforce retries the whole message
            log.error("Salesforce Outbound Message not stored: %s", exc)
            return _fault(503, "notifications not stored, retry later"), 0
        return _soap(200, om.ack_body()), len(items)
