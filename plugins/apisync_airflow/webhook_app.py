"""The webhook receiver as the api-server sees it: settings from env, producer built on first request.

Kafka config: `AIRFLOW_CONN_KAFKA_DEFAULT` (JSON or URI form; its extra is the client config), else
`APISYNC_KAFKA_BOOTSTRAP`. Webhook secrets: `APISYNC_WEBHOOK_SECRETS_<API>` (comma-separated), plus
the `webhook_secrets` list in the extra of `AIRFLOW_CONN_<API>_DEFAULT`. Salesforce organisations whose
Outbound Messages are accepted: `APISYNC_SALESFORCE_ORG_IDS`, plus the Salesforce connection's
`organization_id` extra (the official provider's field). Reading env instead of the
metadata DB keeps the api-server plugin free of DB access and importable with no Kafka around.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apisync.catalog import APIS

log = logging.getLogger("apisync.webhooks")


class WebhookConfigError(RuntimeError):
    """The receiver has no usable Kafka config."""


def _conn_extra(raw: str) -> dict[str, Any]:
    """The extra of an AIRFLOW_CONN_* value, JSON form or URI form."""
    raw = raw.strip()
    if raw.startswith("{"):
        extra = json.loads(raw).get("extra") or {}
        return json.loads(extra) if isinstance(extra, str) else dict(extra)
    query = parse_qs(urlsplit(raw).query)
    if "__extra__" in query:
        return dict(json.loads(query["__extra__"][0]))
    return {key: values[-1] for key, values in query.items()}


def kafka_config_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The client config the receiver produces with."""
    raw = env.get("AIRFLOW_CONN_KAFKA_DEFAULT", "")
    if raw:
        try:
            extra = _conn_extra(raw)
        except (ValueError, AttributeError):
            raise WebhookConfigError("AIRFLOW_CONN_KAFKA_DEFAULT is neither connection JSON nor a URI") from None
        if str(extra.get("bootstrap.servers") or "").strip():
            return extra
    bootstrap = env.get("APISYNC_KAFKA_BOOTSTRAP", "").strip()
    if bootstrap:
        return {"bootstrap.servers": bootstrap}
    raise WebhookConfigError("no Kafka for webhooks: set AIRFLOW_CONN_KAFKA_DEFAULT or APISYNC_KAFKA_BOOTSTRAP")


def connection_secrets(env: Mapping[str, str], apis: tuple[str, ...] = APIS) -> dict[str, tuple[str, ...]]:
    """`webhook_secrets` from each API connection's extra (`AIRFLOW_CONN_<API>_DEFAULT`)."""
    from apisync_airflow.hooks import webhook_secrets_from

    found = {}
    for api in apis:
        raw = env.get(f"AIRFLOW_CONN_{api.upper()}_DEFAULT", "")
        try:
            secrets = webhook_secrets_from(_conn_extra(raw)) if raw else ()
        except (ValueError, AttributeError):
            log.warning("AIRFLOW_CONN_%s_DEFAULT is unreadable; no webhook secrets from it", api.upper())
            secrets = ()
        if secrets:
            found[api] = secrets
    return found


def webhook_settings_from_env(env: Mapping[str, str]):
    """WebhookSettings with secrets from APISYNC_WEBHOOK_SECRETS_<API> and the API connections."""
    from apisync.webhooks.receiver import WebhookSettings

    settings = WebhookSettings.from_env(env)  # the env's other settings (tolerance, public URL, ...) carry over
    merged = {api: tuple(dict.fromkeys((*settings.secrets.get(api, ()), *extra)))
              for api, extra in connection_secrets(env).items()}
    orgs = tuple(dict.fromkeys((*settings.organization_ids, *connection_org_ids(env))))
    return dataclasses.replace(settings, secrets={**settings.secrets, **merged}, organization_ids=orgs)


def connection_org_ids(env: Mapping[str, str]) -> tuple[str, ...]:
    """`organization_id` of the Salesforce connection's extra (`AIRFLOW_CONN_SALESFORCE_DEFAULT`)."""
    from apisync_airflow.salesforce_connection import provider_field

    raw = env.get("AIRFLOW_CONN_SALESFORCE_DEFAULT", "")
    try:
        org = provider_field(_conn_extra(raw), "organization_id") if raw else None
    except (ValueError, AttributeError):
        return ()
    return (str(org).strip(),) if org and str(org).strip() else ()


class LazyProducer:
    """Builds the real producer on first use, so loading the plugin never needs Kafka."""

    def __init__(self, config: Callable[[], Mapping[str, Any]],
                 factory: Callable[[Mapping[str, Any]], Any] | None = None) -> None:
        self._config = config
        self._factory = factory
        self._producer: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._producer is None:
                if self._factory is None:
                    from apisync.kafka.producer import Producer

                    self._factory = Producer
                self._producer = self._factory(self._config())
            return self._producer

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self._get().produce(*args, **kwargs)

    def produce_reported(self, *args: Any, **kwargs: Any) -> None:
        self._get().produce_reported(*args, **kwargs)

    def poll(self, timeout: float) -> int:
        return self._get().poll(timeout)

    def flush(self, timeout: float = 60.0) -> None:
        self._get().flush(timeout)


def create_webhook_app(env: Mapping[str, str] | None = None, producer_factory: Callable[..., Any] | None = None):
    """The receiver FastAPI app for the api-server; Kafka is contacted on the first webhook only."""
    from apisync.webhooks.receiver import PRODUCER_DEFAULTS, create_app

    env = dict(os.environ if env is None else env)
    settings = webhook_settings_from_env(env)
    log.info("apisync webhook receiver: endpoints for %s", ", ".join(sorted(settings.secrets)) or "no api (no secrets)")
    from apisync_airflow.metrics import AirflowStatsMetrics

    return create_app(settings, LazyProducer(lambda: {**PRODUCER_DEFAULTS, **kafka_config_from_env(env)},
                                             producer_factory), AirflowStatsMetrics())
