"""What the receiver and the routes an API mounts itself share: settings, the body limit, metrics and the
`ReceiverContext` one API's own routes get (`WebhookSpec.extra_routes`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from apisync import registry
from apisync.connections import listed
from apisync.errors import FatalError
from apisync.metrics import Metrics, metric_name
from apisync.webhooks.signatures import DEFAULT_TOLERANCE_S
from apisync.webhooks.sink import AckingSink

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB; webhook payloads stay far below (the largest providers cap at 25 MB)


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
        secrets = {k.removeprefix(prefix).lower(): listed(v) for k, v in env.items() if k.startswith(prefix)}
        tolerance = int(env.get("APISYNC_WEBHOOK_TOLERANCE_S", DEFAULT_TOLERANCE_S))
        max_body = int(env.get("APISYNC_WEBHOOK_MAX_BODY", DEFAULT_MAX_BODY))
        public_url = env.get("APISYNC_WEBHOOK_PUBLIC_URL", "").strip()
        api_options = {spec.name: spec.webhook.options_from_env(env) for spec in registry.all_specs()
                       if spec.webhook is not None and spec.webhook.options_from_env is not None}
        return cls(secrets={k: v for k, v in secrets.items() if v}, tolerance_s=tolerance,
                   max_body_bytes=max_body,
                   **{"api_options": api_options, "public_url": public_url, **overrides})


class BodyTooLarge(FatalError):
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
    current: Callable[[], WebhookSettings]  # the settings a request is judged by (they may be refreshed)
    sink: AckingSink
    metrics: WebhookMetrics

    @property
    def settings(self) -> WebhookSettings:
        """The receiver's settings now: read them per request, never keep them."""
        return self.current()

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
