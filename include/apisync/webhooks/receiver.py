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

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from apisync import registry
from apisync.failpoints import failpoint
from apisync.formats import epoch_to_iso
from apisync.metrics import NULL_METRICS, Metrics
from apisync.webhooks.context import (
    BodyTooLarge,
    ReceiverContext,
    WebhookMetrics,
    WebhookSettings,
    read_limited,
)
from apisync.webhooks.dispatch import scheme_for, split_delivery, webhook_key
from apisync.webhooks.signatures import RequestLine, SignatureError
from apisync.webhooks.sink import AckingSink

log = logging.getLogger("apisync.webhooks")

# Producer settings for the receiver, under the caller's: every answer waits for its own delivery, so
# linger.ms adds to each one (5 ms still batches concurrent requests under load), and a
# delivery that cannot be acknowledged within the answer deadline fails instead of lingering.
PRODUCER_DEFAULTS = {"linger.ms": 5, "message.timeout.ms": 9000}
# Request headers worth keeping next to the raw body of any API (lower-case); each API adds its own.
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "user-agent")
RECEIVED_AT_HEADER = "apisync-received-at"  # the receiving server's clock, on every stored message


def called_url(request: Request, public_url: str) -> str:
    """The URL the provider called: `public_url` + the path below the app's root + the query, else the
    request's own URL (a proxy rewrites scheme, host, port and may strip a path prefix)."""
    if not public_url:
        return str(request.url)
    root, path = request.scope.get("root_path", ""), request.url.path
    below_root = path[len(root):] if root and path.startswith(root) else path
    query = request.url.query
    return f"{public_url.rstrip('/')}{below_root}{'?' + query if query else ''}"


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


def create_app(settings: WebhookSettings, producer: Any, metrics: Metrics = NULL_METRICS,
               current: Callable[[], WebhookSettings] | None = None) -> FastAPI:
    """The FastAPI app; producer is an `apisync.kafka.producer.Producer` (acks=all). `settings` build the
    app (body limit, acknowledgement timeout, topic prefix); `current`, when given, returns the settings
    each request is judged by (secrets, API options, tolerance), e.g. re-read from a secrets store so a
    rotated secret takes effect without a restart; it is called on every request, so it must be cheap."""
    current = current or (lambda: settings)
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
        now = current()
        secrets = now.secrets.get(api)
        if not secrets:
            return _answer(404, f"no webhook endpoint for api {api!r}"), 0
        try:
            body = await read_limited(request, now.max_body_bytes)
        except BodyTooLarge:
            return _answer(413, f"body larger than {now.max_body_bytes} bytes"), 0
        line = RequestLine(request.method, called_url(request, now.public_url))
        try:
            scheme_for(api, secrets, now.tolerance_s).verify(body, request.headers, now.clock(), line)
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
            spec.webhook.extra_routes(app, ReceiverContext(spec.name, current, sink, counted))

    @app.get("/webhooks/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app

