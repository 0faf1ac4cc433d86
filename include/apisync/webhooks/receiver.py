"""The webhook receiver: verify, write the raw bytes to `<api>.webhooks`, answer after Kafka acked.

`create_app(settings, producer)` returns a FastAPI app with `POST /webhooks/{api}`. The Airflow
plugin mounts it on the api-server; alone it runs under uvicorn (`python -m apisync.webhooks`).
Order of checks: known api (404) → body size (413) → signature headers (400) → signature and
timestamp (401) → produce and wait for the acknowledgement (acks=all) → 200, or 503 so the provider
retries. Nothing is produced for a rejected request, and secrets never reach a log or an answer.

Schemes that sign the URL the provider called (HubSpot v3) get it from `public_url` when set
(`APISYNC_WEBHOOK_PUBLIC_URL`): behind a TLS-terminating proxy or load balancer the request the app sees
has another scheme, host and port (and maybe path prefix) than the one the provider signed.

An API whose provider calls another kind of endpoint mounts its own routes (`WebhookSpec.extra_routes`),
given a `ReceiverContext`: its options (`WebhookSettings.api_options[<api>]`, read from the environment by
the API's `options_from_env`), the acking sink, the body limit and the metrics. The request headers kept
next to the raw body are the generic ones (`KEPT_HEADERS`) and those every registered API declares
(`WebhookSpec.kept_headers`).
"""

from __future__ import annotations

import asyncio
import logging
import os
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
# Request headers worth keeping next to the raw body of any API (lower-case); each API adds its own.
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "user-agent")
RECEIVED_AT_HEADER = "apisync-received-at"  # the receiving server's clock, on every stored message


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """Receiver settings; secrets are per api, several active during a rotation."""

    secrets: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S
    max_body_bytes: int = DEFAULT_MAX_BODY
    ack_timeout_s: float = 10.0  # GitHub wants an answer within 10 s
    clock: Callable[[], float] = time.time
    topic_prefix: str = ""  # isolates test runs; production topics are plain `<api>.webhooks`
    # {api: options of its own routes (`WebhookSpec.extra_routes`)}, as its `options_from_env` reads them;
    # they may hold secrets, so they are never shown.
    api_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # The receiver's root as the providers call it (e.g. https://hooks.example.com/airflow), for
    # signatures over the URL; empty: the URL of the request as it reached this process.
    public_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebhookSettings:
        """APISYNC_WEBHOOK_SECRETS_<API>=s1,s2 (comma-separated), APISYNC_WEBHOOK_TOLERANCE_S, ..._MAX_BODY,
        APISYNC_WEBHOOK_PUBLIC_URL, and what each registered API reads itself (`WebhookSpec.options_from_env`)."""
        env = os.environ if env is None else env
        prefix = "APISYNC_WEBHOOK_SECRETS_"
        secrets = {k.removeprefix(prefix).lower(): tuple(s.strip() for s in v.split(",") if s.strip())
                   for k, v in env.items() if k.startswith(prefix)}
        tolerance = int(env.get("APISYNC_WEBHOOK_TOLERANCE_S", DEFAULT_TOLERANCE_S))
        max_body = int(env.get("APISYNC_WEBHOOK_MAX_BODY", DEFAULT_MAX_BODY))
        public_url = env.get("APISYNC_WEBHOOK_PUBLIC_URL", "").strip()
        api_options = {spec.name: spec.webhook.options_from_env(env) for spec in registry.all_specs()
                       if spec.webhook is not None and spec.webhook.options_from_env is not None}
        return cls(secrets={k: v for k, v in secrets.items() if v}, tolerance_s=tolerance,
                   max_body_bytes=max_body,
                   **{"api_options": api_options, "public_url": public_url, **overrides})


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


def kept_by_raw_name() -> dict[bytes, str]:
    """{raw ASGI name (lower-case bytes): name} of the headers kept: the generic ones and every API's."""
    declared = (spec.webhook.kept_headers for spec in registry.all_specs() if spec.webhook is not None)
    names = [*KEPT_HEADERS, *(name for kept in declared for name in kept)]
    return {name.lower().encode("latin-1"): name.lower() for name in names}


def _kafka_headers(request: Request, received_at: str, kept_names: Mapping[bytes, str]) -> list[tuple[str, bytes]]:
    """The kept request headers as received (the first of a repeated one), then the receive time."""
    kept: dict[str, bytes] = {}
    for raw_name, value in request.headers.raw:  # one pass: a lookup per kept name scanned every header
        name = kept_names.get(raw_name)
        if name is not None:
            kept.setdefault(name, value)
    return [*kept.items(), (RECEIVED_AT_HEADER, received_at.encode())]


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


@dataclass(frozen=True, slots=True)
class ReceiverContext:
    """What the receiver lends one API's own routes (`WebhookSpec.extra_routes(app, context)`)."""

    api: str
    settings: WebhookSettings
    sink: AckingSink
    metrics: WebhookMetrics

    @property
    def options(self) -> Mapping[str, Any]:
        """This API's receiver options (`WebhookSettings.api_options[api]`; empty when none are set)."""
        return self.settings.api_options.get(self.api, {})

    @property
    def topic(self) -> str:
        """Where this API's deliveries go: `<prefix><api>.webhooks`."""
        return f"{self.settings.topic_prefix}{self.api}.webhooks"

    async def read_body(self, request: Request) -> bytes:
        """The raw body within the receiver's limit (BodyTooLarge otherwise)."""
        return await read_limited(request, self.settings.max_body_bytes)

    def answered(self, status: int, stored: int = 0) -> None:
        """Count an answer in the receiver's metrics, as for `POST /webhooks/<api>`."""
        self.metrics.answered(self.api, status, stored)


def create_app(settings: WebhookSettings, producer: Any, metrics: Metrics = NULL_METRICS) -> FastAPI:
    """The FastAPI app; producer is an `apisync.kafka.producer.Producer` (acks=all)."""
    app = FastAPI(title="apisync webhooks", docs_url=None, redoc_url=None)
    sink = AckingSink(producer, settings.ack_timeout_s)
    counted = WebhookMetrics(metrics)
    kept_names = kept_by_raw_name()  # the registry, read once per app

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
        headers = _kafka_headers(request, epoch_to_iso(settings.clock()), kept_names)
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

    for spec in registry.all_specs():
        if spec.webhook is not None and spec.webhook.extra_routes is not None:
            spec.webhook.extra_routes(app, ReceiverContext(spec.name, settings, sink, counted))

    @app.get("/webhooks/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app

