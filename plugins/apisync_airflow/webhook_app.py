"""The webhook receiver as the api-server sees it: settings from env and connections, producer built on first request.

Kafka config: the `kafka_default` connection, built by the Kafka provider's hook exactly as for tasks
and the triggerer (any secrets backend, SASL/TLS settings, allowlisted callbacks, Amazon MSK IAM and
Google Managed Kafka token callbacks), read on the first webhook; without that connection
`APISYNC_KAFKA_CONFIG` / `APISYNC_KAFKA_*` (see apisync.kafka.config_loader).
Webhook secrets: `APISYNC_WEBHOOK_SECRETS_<API>` (comma-separated), plus the `webhook_secrets` list in
the extra of the `<api>_default` connection, wherever Airflow keeps it (environment, secrets backend,
the metadata database), re-read every minute. The options of an API's own routes: what its spec reads
from the environment (`WebhookSpec.options_from_env`), joined with what it reads from that connection's
extra (`WebhookSpec.options_from_connection`; e.g. Salesforce's accepted organisations,
`organization_id`, and Outbound Messaging path secrets, `outbound_message_secrets`). Reading connections
and contacting Kafka only from the first webhook on keep the plugin importable with no Kafka or database
around.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from apisync.errors import FatalError
from apisync.registry import APIS, all_specs

log = logging.getLogger("apisync.webhooks")


KAFKA_CONN_ID = "kafka_default"
CONNECTION_REFRESH_S = 60.0  # how stale a secret changed in a connection may be


class WebhookConfigError(FatalError):
    """The receiver has no usable Kafka config."""


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


def api_connection_extras(apis: tuple[str, ...] = APIS) -> dict[str, dict[str, Any]]:
    """The extra of each API's `<api>_default` connection, looked up as a task looks it up: environment
    variables, the configured secrets backend (Vault, AWS Secrets Manager, ...) and, in the api-server, the
    metadata database (a connection made in the UI). A missing connection is left out; one that cannot be
    read is logged in one line and left out."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    found = {}
    for api in apis:
        conn_id = f"{api}_default"
        try:
            found[api] = dict(BaseHook.get_connection(conn_id).extra_dejson)
        except AirflowNotFoundException:
            continue
        except Exception as exc:  # a backend's failure must not take the receiver down; its text may hold secrets
            log.warning("connection %s could not be read (%s); no webhook settings from it", conn_id,
                        type(exc).__name__)
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


def receiver_settings(env: Mapping[str, str], extras: Mapping[str, Mapping[str, Any]]):
    """WebhookSettings from the environment joined with what the API connections' extras add (secrets listed
    in both are kept once; the environment's first)."""
    from apisync.webhooks.receiver import WebhookSettings

    settings = WebhookSettings.from_env(env)  # the env's other settings (tolerance, public URL, ...) carry over
    merged = {api: tuple(dict.fromkeys((*settings.secrets.get(api, ()), *secrets)))
              for api, secrets in connection_secrets(extras).items()}
    options = {api: _joined(settings.api_options.get(api, {}), found)
               for api, found in connection_options(extras).items()}
    return dataclasses.replace(settings, secrets={**settings.secrets, **merged},
                               api_options={**settings.api_options, **options})


def _in_a_thread(job: Callable[[], None]) -> None:
    threading.Thread(target=job, name="apisync-webhook-settings", daemon=True).start()


class ConnectionBackedSettings:
    """The receiver's current settings: the environment's, joined with the API connections' extras re-read
    every `refresh_s` seconds, so a secret added or rotated in the UI or a secrets backend takes effect
    within a minute, without restarting the api-server.

    The first read happens on the first webhook (loading the plugin must not need a database) and that
    request waits for it; every later read runs in a thread while requests are judged by the settings read
    before, so a slow secrets backend never stalls the api-server's event loop more than once."""

    def __init__(self, env: Mapping[str, str], refresh_s: float = CONNECTION_REFRESH_S,
                 extras: Callable[[], Mapping[str, Mapping[str, Any]]] = api_connection_extras,
                 clock: Callable[[], float] = time.monotonic,
                 start: Callable[[Callable[[], None]], None] = _in_a_thread) -> None:
        self._env, self._refresh_s, self._extras, self._clock, self._start = env, refresh_s, extras, clock, start
        self._settings: Any = None
        self._due_at = 0.0  # when the next read starts
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            first, due = self._settings is None, self._clock() >= self._due_at
            if due:
                self._due_at = self._clock() + self._refresh_s  # one read at a time, a period apart
        if first:
            self._read()
        elif due:
            self._start(self._read)
        return self._settings

    def _read(self) -> None:
        try:
            settings = receiver_settings(self._env, self._extras())
        except Exception as exc:  # e.g. an extra of a shape its API cannot read; the text may hold a secret
            log.error("apisync webhook receiver: the API connections could not be read (%s); the settings "
                      "read before stay", type(exc).__name__)
            settings = self._settings or receiver_settings(self._env, {})
        with self._lock:
            before, self._settings = self._settings, settings
        if before is None or sorted(settings.secrets) != sorted(before.secrets):
            log.info("apisync webhook receiver: endpoints for %s",
                     ", ".join(sorted(settings.secrets)) or "no api (no secrets)")


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
    from apisync.webhooks.receiver import PRODUCER_DEFAULTS, WebhookSettings, create_app
    from apisync_airflow.metrics import AirflowStatsMetrics

    env = dict(os.environ if env is None else env)
    return create_app(WebhookSettings.from_env(env),
                      LazyProducer(lambda: {**PRODUCER_DEFAULTS, **receiver_kafka_config(env)}, producer_factory),
                      AirflowStatsMetrics(), current=ConnectionBackedSettings(env))
