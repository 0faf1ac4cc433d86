"""The webhook receiver as the api-server sees it: settings from env, producer built on first request.

Kafka config: the `kafka_default` connection, built by the Kafka provider's hook exactly as for tasks
and the triggerer (any secrets backend, SASL/TLS settings, allowlisted callbacks, Amazon MSK IAM and
Google Managed Kafka token callbacks), read on the first webhook; without that connection
`APISYNC_KAFKA_CONFIG` / `APISYNC_KAFKA_*` (see apisync.kafka.config_loader).
Webhook secrets: `APISYNC_WEBHOOK_SECRETS_<API>` (comma-separated), plus
the `webhook_secrets` list in the extra of `AIRFLOW_CONN_<API>_DEFAULT`. Salesforce organisations whose
Outbound Messages are accepted: `APISYNC_SALESFORCE_ORG_IDS`, plus the Salesforce connection's
`organization_id` extra (the official provider's field). The path secrets of the Outbound Messaging
endpoint (`.../outbound-messages/<secret>`): `APISYNC_SALESFORCE_OUTBOUND_SECRETS`, plus the Salesforce
connection's `outbound_message_secrets` extra (a list, or comma-separated). Reading env and
contacting Kafka only on the first webhook keep the plugin importable with no Kafka or database around.
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

from apisync.errors import FatalError
from apisync.registry import APIS

log = logging.getLogger("apisync.webhooks")


KAFKA_CONN_ID = "kafka_default"


class WebhookConfigError(FatalError):
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


def receiver_kafka_config(env: Mapping[str, str], conn_id: str = KAFKA_CONN_ID) -> dict[str, Any]:
    """The client config the receiver produces with: the Kafka connection as the provider builds it, else
    APISYNC_KAFKA_CONFIG / APISYNC_KAFKA_* (a connection that exists but is unusable is an error, not skipped)."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from apisync.kafka.config_loader import KafkaConfigError, describe, load_kafka_config
    from apisync_airflow.hooks import ConnectionConfigError, KafkaConfigHook

    try:
        config, source = KafkaConfigHook(conn_id).get_config(), f"connection {conn_id!r}"
    except AirflowNotFoundException:
        try:
            config, source = load_kafka_config(env=env), "APISYNC_KAFKA_* environment"
        except KafkaConfigError as exc:
            raise WebhookConfigError(f"no Kafka for webhooks: define the {conn_id!r} connection "
                                     f"or set APISYNC_KAFKA_CONFIG / APISYNC_KAFKA_BOOTSTRAP ({exc})") from None
    except ConnectionConfigError as exc:
        raise WebhookConfigError(str(exc)) from None
    log.info("apisync webhook receiver: producing to %s, from the %s", describe(config), source)
    return config


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
    outbound = settings.api_options.get("salesforce", {})
    orgs = tuple(dict.fromkeys((*outbound.get("organization_ids", ()), *connection_org_ids(env))))
    paths = tuple(dict.fromkeys((*outbound.get("outbound_secrets", ()), *connection_outbound_secrets(env))))
    api_options = {**settings.api_options,
                   "salesforce": {**outbound, "organization_ids": orgs, "outbound_secrets": paths}}
    return dataclasses.replace(settings, secrets={**settings.secrets, **merged}, api_options=api_options)


def connection_outbound_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """`outbound_message_secrets` of the Salesforce connection's extra (`AIRFLOW_CONN_SALESFORCE_DEFAULT`)."""
    from apisync_airflow.hooks import webhook_secrets_from

    raw = env.get("AIRFLOW_CONN_SALESFORCE_DEFAULT", "")
    try:
        extra = _conn_extra(raw) if raw else {}
    except (ValueError, AttributeError):
        return ()
    return webhook_secrets_from({"webhook_secrets": extra.get("outbound_message_secrets")})


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

    return create_app(settings, LazyProducer(lambda: {**PRODUCER_DEFAULTS, **receiver_kafka_config(env)},
                                             producer_factory), AirflowStatsMetrics())
