"""The webhook receiver as the api-server sees it: settings from env, producer built on first request.

Kafka config: the `kafka_default` connection, built by the Kafka provider's hook exactly as for tasks
and the triggerer (any secrets backend, SASL/TLS settings, allowlisted callbacks, Amazon MSK IAM and
Google Managed Kafka token callbacks), read on the first webhook; without that connection
`APISYNC_KAFKA_CONFIG` / `APISYNC_KAFKA_*` (see apisync.kafka.config_loader).
Webhook secrets: `APISYNC_WEBHOOK_SECRETS_<API>` (comma-separated), plus
the `webhook_secrets` list in the extra of `AIRFLOW_CONN_<API>_DEFAULT`. The options of an API's own
routes: what its spec reads from the environment (`WebhookSpec.options_from_env`), joined with what it
reads from that connection's extra (`WebhookSpec.options_from_connection`; e.g. Salesforce's accepted
organisations, `organization_id`, and Outbound Messaging path secrets, `outbound_message_secrets`).
Reading env and contacting Kafka only on the first webhook keep the plugin importable with no Kafka or
database around.
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
from apisync.registry import APIS, all_specs

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


def connection_extras(env: Mapping[str, str], apis: tuple[str, ...] = APIS) -> dict[str, dict[str, Any]]:
    """The extra of each API connection given as `AIRFLOW_CONN_<API>_DEFAULT` (an unreadable one is left out)."""
    found = {}
    for api in apis:
        raw = env.get(f"AIRFLOW_CONN_{api.upper()}_DEFAULT", "")
        if not raw:
            continue
        try:
            extra = _conn_extra(raw)
        except (ValueError, AttributeError):
            extra = None
        if isinstance(extra, dict):
            found[api] = extra
        else:
            log.warning("AIRFLOW_CONN_%s_DEFAULT is unreadable; no webhook settings from it", api.upper())
    return found


def connection_secrets(extras: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """`webhook_secrets` from each API connection's extra."""
    from apisync_airflow.hooks import webhook_secrets_from

    return {api: secrets for api, extra in extras.items() if (secrets := webhook_secrets_from(extra))}


def connection_options(extras: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Receiver options each API reads from its connection's extra (`WebhookSpec.options_from_connection`)."""
    readers = {spec.name: spec.webhook.options_from_connection for spec in all_specs()
               if spec.webhook is not None and spec.webhook.options_from_connection is not None}
    return {api: readers[api](extra) for api, extra in extras.items() if api in readers}


def _joined(from_env: Mapping[str, Any], from_connection: Mapping[str, Any]) -> dict[str, Any]:
    """The environment's options with the connection's: a tuple adds its items after the environment's (no
    repeats); any other value fills in only where the environment sets none."""
    joined = dict(from_env)
    for name, value in from_connection.items():
        if isinstance(value, tuple):
            joined[name] = tuple(dict.fromkeys((*joined.get(name, ()), *value)))
        else:
            joined.setdefault(name, value)
    return joined


def webhook_settings_from_env(env: Mapping[str, str]):
    """WebhookSettings with secrets and options from the environment and from the API connections."""
    from apisync.webhooks.receiver import WebhookSettings

    settings = WebhookSettings.from_env(env)  # the env's other settings (tolerance, public URL, ...) carry over
    extras = connection_extras(env)
    merged = {api: tuple(dict.fromkeys((*settings.secrets.get(api, ()), *secrets)))
              for api, secrets in connection_secrets(extras).items()}
    options = {api: _joined(settings.api_options.get(api, {}), found)
               for api, found in connection_options(extras).items()}
    return dataclasses.replace(settings, secrets={**settings.secrets, **merged},
                               api_options={**settings.api_options, **options})


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
