"""The webhook receiver: verify, write the raw bytes to `<api>.webhooks`, answer after Kafka acked.

`create_app(settings, producer)` returns a FastAPI app with `POST /webhooks/{api}`. The Airflow
plugin mounts it on the api-server; alone it runs under uvicorn (`python -m apisync.webhooks`).
Order of checks: known api (404) → body size (413) → signature headers (400) → signature and
timestamp (401) → produce and wait for the acknowledgement (acks=all) → 200, or 503 so the provider
retries. Nothing is produced for a rejected request, and secrets never reach a log or an answer.

Schemes that sign the URL the provider called (HubSpot v3) get it from `public_url` when set
(`APISYNC_WEBHOOK_PUBLIC_URL`): behind a TLS-terminating proxy or load balancer the request the app sees
has another scheme, host and port (and maybe path prefix) than the one the provider signed.

`POST /webhooks/salesforce/outbound-messages/<secret>` receives Salesforce Outbound Messaging (SOAP, see
`outbound_messaging`): endpoint configured, i.e. organisations and path secrets set (else 404) → sender
address in the allow-list, when one is set (403) → path secret one of the configured ones (401; also
without one) → body size (413) → well-formed notifications (400) → OrganizationId one of the configured
organisations (403) → one Kafka message per notification, all acknowledged (else 503) → the SOAP `Ack`.
Faults are SOAP Fault bodies; Salesforce retries anything it did not get an Ack for. The path secret is
the only secret an Outbound Message can carry (its endpoint URL); `RedactPathSecret` keeps it out of
the ASGI server's access log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from apisync import registry
from apisync.apis.salesforce import outbound_messaging as om
from apisync.failpoints import failpoint
from apisync.formats import epoch_to_iso
from apisync.kafka.producer import DeliveryPoller
from apisync.metrics import NULL_METRICS, Metrics, metric_name
from apisync.webhooks.dispatch import scheme_for, split_delivery, webhook_key
from apisync.webhooks.signatures import DEFAULT_TOLERANCE_S, RequestLine, SignatureError

log = logging.getLogger("apisync.webhooks")

# Producer settings for the receiver, under the caller's: every answer waits for its own delivery, so
# linger.ms adds to each one (flush() used to send at once; 5 ms still batches under load), and a
# delivery that cannot be acknowledged within the answer deadline fails instead of lingering.
PRODUCER_DEFAULTS = {"linger.ms": 5, "message.timeout.ms": 9000}
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB; Stripe and GitHub payloads stay far below (GitHub caps at 25 MB)
# Request headers worth keeping next to the raw body (lower-case).
KEPT_HEADERS = ("content-type", "stripe-signature", "x-hub-signature-256", "x-github-event",
                "x-github-delivery", "x-github-hook-id", "webhook-id", "webhook-timestamp",
                "webhook-signature", "user-agent")
_KEPT_BY_RAW_NAME = {name.encode("latin-1"): name for name in KEPT_HEADERS}  # ASGI names are lower-case bytes


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Receiver settings; secrets are per api, several active during a rotation."""

    secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S
    max_body_bytes: int = DEFAULT_MAX_BODY
    ack_timeout_s: float = 10.0  # GitHub wants an answer within 10 s
    clock: Callable[[], float] = time.time
    topic_prefix: str = ""  # isolates test runs; production topics are plain `<api>.webhooks`
    # Salesforce organisations whose Outbound Messages are accepted (not secrets: an identity check)
    organization_ids: tuple[str, ...] = ()
    # Path secrets of the Outbound Messaging endpoint (`.../outbound-messages/<secret>`), several during a
    # rotation; without one the endpoint is off.
    outbound_secrets: tuple[str, ...] = field(default=(), repr=False)
    # Networks (CIDR) Outbound Messages may come from, e.g. Salesforce's published ranges; empty: any.
    outbound_allowed_ips: tuple[str, ...] = ()
    # The receiver's root as the providers call it (e.g. https://hooks.example.com/airflow), for
    # signatures over the URL; empty: the URL of the request as it reached this process.
    public_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebhookSettings:
        """APISYNC_WEBHOOK_SECRETS_<API>=s1,s2 (comma-separated), APISYNC_WEBHOOK_TOLERANCE_S, ..._MAX_BODY,
        APISYNC_WEBHOOK_PUBLIC_URL, APISYNC_SALESFORCE_ORG_IDS, APISYNC_SALESFORCE_OUTBOUND_SECRETS and
        APISYNC_SALESFORCE_OUTBOUND_ALLOWED_IPS (comma-separated)."""
        env = os.environ if env is None else env
        prefix = "APISYNC_WEBHOOK_SECRETS_"
        secrets = {k.removeprefix(prefix).lower(): tuple(s.strip() for s in v.split(",") if s.strip())
                   for k, v in env.items() if k.startswith(prefix)}
        tolerance = int(env.get("APISYNC_WEBHOOK_TOLERANCE_S", DEFAULT_TOLERANCE_S))
        max_body = int(env.get("APISYNC_WEBHOOK_MAX_BODY", DEFAULT_MAX_BODY))
        orgs = _listed(env, "APISYNC_SALESFORCE_ORG_IDS")
        public_url = env.get("APISYNC_WEBHOOK_PUBLIC_URL", "").strip()
        outbound = {"outbound_secrets": _listed(env, "APISYNC_SALESFORCE_OUTBOUND_SECRETS"),
                    "outbound_allowed_ips": _listed(env, "APISYNC_SALESFORCE_OUTBOUND_ALLOWED_IPS")}
        return cls(secrets={k: v for k, v in secrets.items() if v}, tolerance_s=tolerance,
                   max_body_bytes=max_body,
                   **{"organization_ids": orgs, "public_url": public_url, **outbound, **overrides})


def _listed(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated variable's non-empty items."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def called_url(request: Request, public_url: str) -> str:
    """The URL the provider called: `public_url` + the path below the app's root + the query, else the
    request's own URL (a proxy rewrites scheme, host, port and may strip a path prefix)."""
    if not public_url:
        return str(request.url)
    root, path = request.scope.get("root_path", ""), request.url.path
    below_root = path[len(root):] if root and path.startswith(root) else path
    query = request.url.query
    return f"{public_url.rstrip('/')}{below_root}{'?' + query if query else ''}"


class BodyTooLarge(Exception):
    """The request body exceeds the configured limit."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than limit bytes without reading all of it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


class AckingSink:
    """Produce messages and wait, in the event loop, until Kafka acknowledged each of them (or raise).

    Each request waits for its own delivery reports only: a `DeliveryPoller` thread serves the reports
    and each one resolves its request's future. (A flush() per request waited for the producer's whole
    queue, so under load every request waited for everyone's messages.) Serving the reports from the
    event loop instead (poll(0) on a 2 ms timer) measured worse on two loaded cores: the receiver
    saturated below 200 req/s, where the poller thread answered with p99 ~35 ms.

    Messages are queued from the event loop itself: librdkafka's produce only appends to its local
    queue, and a hop to a worker thread per request was ~30% of the loop's time. Only when that queue
    is full (BufferError) does the rest go to a worker thread, which waits for room there.
    """

    def __init__(self, producer: Any, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._lock = threading.Lock()  # the wrapper's produce path is not meant for concurrent callers
        self._poller = DeliveryPoller(producer)

    async def send_all(self, topic: str, items: list[tuple[str | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Raise RuntimeError unless every one of these messages was acknowledged within the timeout."""
        delivered = DeliveryReports(asyncio.get_running_loop(), len(items))
        reports = [self._poller.tracked(delivered.report) for _ in items]
        try:
            queued = self._produce_without_waiting(topic, items, reports)
            if queued < len(items):  # the local queue is full: wait for room in a worker thread
                await run_in_threadpool(self._produce, topic, items[queued:], reports[queued:])
        finally:  # also when the request was cancelled meanwhile: what was queued gets its reports served
            self._poller.ensure_polling()
        try:
            async with asyncio.timeout(self._timeout_s):
                await delivered.all_in
        except TimeoutError:
            raise RuntimeError(f"Kafka did not acknowledge the webhook on {topic} "
                               f"within {self._timeout_s:.0f}s") from None
        if delivered.failures:
            raise RuntimeError(f"Kafka did not acknowledge {len(delivered.failures)} of {len(items)} messages "
                               f"on {topic}: {delivered.failures[0]}")

    def _produce_without_waiting(self, topic: str, items: list, reports: list[Callable[[str | None], None]]) -> int:
        """Queue what fits without blocking the event loop; how many of items were dealt with."""
        if not self._lock.acquire(blocking=False):  # a worker thread is waiting for room: queue behind it
            return 0
        try:
            return self._queue(topic, items, reports, wait_for_room=False)
        finally:
            self._lock.release()

    def _produce(self, topic: str, items: list, reports: list[Callable[[str | None], None]]) -> None:
        with self._lock:
            self._queue(topic, items, reports, wait_for_room=True)

    def _queue(self, topic: str, items: list, reports: list[Callable[[str | None], None]], wait_for_room: bool) -> int:
        for index, ((key, value, headers), report) in enumerate(zip(items, reports, strict=True)):
            try:
                self._producer.produce_reported(topic, key, value, headers, report, wait_for_room=wait_for_room)
            except BufferError:  # only without wait_for_room: this one and the rest are left to the caller
                return index
            except Exception as exc:  # not queued: no report will come for this one or the rest
                for unsent in reports[index:]:
                    unsent(f"not queued: {exc}")
                return len(items)
        return len(items)


class DeliveryReports:
    """The delivery reports of one request's messages, counted in its event loop into one future.

    One future per request, not one per message gathered under wait_for: those were ~5% of a request."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop = loop
        self._pending = count
        self.failures: list[str] = []
        self.all_in = loop.create_future()
        if not count:
            self.all_in.set_result(None)

    def report(self, error: str | None) -> None:
        """A message's outcome (None: acknowledged), from any thread."""
        try:
            self._loop.call_soon_threadsafe(self._count, error)
        except RuntimeError:  # the loop is closed: nobody waits for this answer any more
            pass

    def _count(self, error: str | None) -> None:
        if error is not None:
            self.failures.append(error)
        self._pending -= 1
        if not self._pending and not self.all_in.done():  # done already: the request timed out
            self.all_in.set_result(None)


def _kafka_headers(request: Request, received_at: str) -> list[tuple[str, bytes]]:
    """The kept request headers as received (the first of a repeated one), then the receive time."""
    kept: dict[str, bytes] = {}
    for raw_name, value in request.headers.raw:  # one pass: a lookup per kept name scanned every header
        name = _KEPT_BY_RAW_NAME.get(raw_name)
        if name is not None:
            kept.setdefault(name, value)
    return [*kept.items(), ("apisync-received-at", received_at.encode())]


def _answer(status: int, message: str) -> Response:
    return JSONResponse({"error": message} if status >= 400 else {"status": message}, status_code=status)


STORED_BODY = orjson.dumps({"status": "stored"})


def _stored() -> Response:
    """The 200 every stored webhook gets, its JSON rendered once (JSONResponse dumps it per request)."""
    return Response(STORED_BODY, media_type="application/json")


class WebhookMetrics:
    """`apisync.webhooks.<api>.stored` (messages acknowledged by Kafka), `.rejected` (4xx answers) and
    `.failed` (503: not stored, the provider retries)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._names: dict[tuple[str, str], str] = {}  # metric_name's regex per answer was ~2% of a request

    def answered(self, api: str, status: int, stored: int = 0) -> None:
        if api not in registry.APIS:
            api = "unknown"  # a path segment from the internet must not mint metric names
        outcome = "stored" if status < 400 else ("failed" if status >= 500 else "rejected")
        self._metrics.incr(self._name(api, outcome), stored if status < 400 else 1, {"api": api})

    def _name(self, api: str, outcome: str) -> str:
        name = self._names.get((api, outcome))
        if name is None:
            name = self._names[api, outcome] = metric_name("webhooks", api, outcome)
        return name


def create_app(settings: WebhookSettings, producer: Any, metrics: Metrics = NULL_METRICS) -> FastAPI:
    """The FastAPI app; producer is an `apisync.kafka.producer.Producer` (acks=all)."""
    app = FastAPI(title="apisync webhooks", docs_url=None, redoc_url=None)
    sink = AckingSink(producer, settings.ack_timeout_s)
    counted = WebhookMetrics(metrics)

    async def receive(request: Request) -> Response:
        api = request.path_params["api"]
        answer, stored = await _receive(api, request)
        counted.answered(api, answer.status_code, stored)
        return answer

    # Plain Starlette routes: the raw body is the point, so FastAPI has no parameter to check, and its
    # dependency solving and validation per request were ~10% of the receiver's CPU.
    app.add_route("/webhooks/{api}", receive, methods=["POST"])

    async def _receive(api: str, request: Request) -> tuple[Response, int]:
        secrets = settings.secrets.get(api)
        if not secrets:
            return _answer(404, f"no webhook endpoint for api {api!r}"), 0
        try:
            body = await read_limited(request, settings.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, f"body larger than {settings.max_body_bytes} bytes"), 0
        line = RequestLine(request.method, called_url(request, settings.public_url))
        try:
            scheme_for(api, secrets, settings.tolerance_s).verify(body, request.headers, settings.clock(), line)
        except SignatureError as exc:
            log.warning("rejected %s webhook: %s", api, exc)
            return _answer(exc.status, str(exc)), 0
        return await _forward(api, body, request)

    async def _forward(api: str, body: bytes, request: Request) -> tuple[Response, int]:
        headers = _kafka_headers(request, epoch_to_iso(settings.clock()))
        try:
            items = [(webhook_key(api, part, request.headers), part, headers) for part in split_delivery(api, body)]
        except ValueError as exc:  # a batch that cannot be split: the provider's retry will not mend it
            log.warning("rejected %s webhook: %s", api, exc)
            return _answer(400, str(exc)), 0
        failpoint("webhook.verified")  # verified, not yet in Kafka
        try:
            await sink.send_all(f"{settings.topic_prefix}{api}.webhooks", items)
        except Exception as exc:  # any Kafka trouble: the provider must retry
            log.error("webhook for %s not stored: %s", api, exc)
            return _answer(503, "webhook not stored, retry later"), 0
        failpoint("webhook.acked")  # in Kafka, the provider not yet answered: it will deliver again
        return _stored(), len(items)

    _mount_outbound_messaging(app, settings, sink, counted)

    @app.get("/webhooks/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _soap(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type=om.CONTENT_TYPE)


def _fault(status: int, message: str) -> Response:
    return _soap(status, om.fault_body("Server" if status >= 500 else "Client", message))


def _notification_items(message: om.OutboundMessage, received_at: str) -> list[tuple]:
    """(key, single-notification body, Kafka headers) per notification; key = record key, else its Id."""
    items = []
    for note in message.notifications:
        headers = [("content-type", om.CONTENT_TYPE.encode()), ("apisync-received-at", received_at.encode()),
                   ("apisync-notification-id", note.id.encode()), ("apisync-action-id", message.action_id.encode())]
        items.append((note.record_key or note.id, om.single_notification_body(message, note), headers))
    return items


OUTBOUND_PATH = "/webhooks/salesforce/outbound-messages"


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


def _outbound_refusal(request: Request, settings: WebhookSettings, networks: tuple) -> Response | None:
    """The fault for a request not from a configured sender (endpoint, allow-list, path secret), else None."""
    if not settings.organization_ids or not settings.outbound_secrets:
        return _fault(404, "no Outbound Messaging endpoint: configure the Salesforce organization_id "
                           "and an outbound messaging path secret")
    host = request.client.host if request.client else None
    if not om.sender_allowed(host, networks):
        log.warning("rejected Salesforce Outbound Message from %s: not in the allowed networks", host)
        return _fault(403, "sender address is not in the allowed networks")
    if not om.path_secret_matches(request.path_params.get("secret", ""), settings.outbound_secrets):
        log.warning("rejected Salesforce Outbound Message from %s: the endpoint URL's path secret is missing "
                    "or wrong", host)
        return _fault(401, "the endpoint URL lacks the configured path secret")
    return None


def _mount_outbound_messaging(app: FastAPI, settings: WebhookSettings, sink: AckingSink,
                              counted: WebhookMetrics) -> None:
    """POST /webhooks/salesforce/outbound-messages/<secret>: SOAP in, one message per notification, Ack out."""
    networks = om.allowed_networks(settings.outbound_allowed_ips)
    if settings.outbound_secrets:
        _redact_access_log()

    async def receive_outbound(request: Request) -> Response:
        answer, stored = await _receive_outbound(request)
        counted.answered("salesforce", answer.status_code, stored)
        return answer

    # Without a secret too: a URL that lacks it gets a fault that says so, not a bare 404.
    app.add_route(OUTBOUND_PATH, receive_outbound, methods=["POST"])
    app.add_route(OUTBOUND_PATH + "/{secret}", receive_outbound, methods=["POST"])

    async def _receive_outbound(request: Request) -> tuple[Response, int]:
        refusal = _outbound_refusal(request, settings, networks)
        if refusal is not None:
            return refusal, 0
        try:
            message = om.parse_envelope(await read_limited(request, settings.max_body_bytes))
        except BodyTooLarge:
            return _fault(413, f"body larger than {settings.max_body_bytes} bytes"), 0
        except om.OutboundMessageError as exc:
            log.warning("rejected Salesforce Outbound Message: %s", exc)
            return _fault(400, str(exc)), 0
        if not om.same_org(message.organization_id, settings.organization_ids):
            log.warning("rejected Salesforce Outbound Message from organisation %s (not configured)",
                        message.organization_id[:18])
            return _fault(403, "OrganizationId is not a configured Salesforce organisation"), 0
        received_at = epoch_to_iso(settings.clock())
        items = _notification_items(message, received_at)
        try:
            await sink.send_all(f"{settings.topic_prefix}salesforce.webhooks", items)
        except Exception as exc:  # any Kafka trouble: no Ack, so Salesforce retries the whole message
            log.error("Salesforce Outbound Message not stored: %s", exc)
            return _fault(503, "notifications not stored, retry later"), 0
        return _soap(200, om.ack_body()), len(items)
