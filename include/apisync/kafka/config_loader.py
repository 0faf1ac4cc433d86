"""The full Kafka client config for processes outside Airflow: from a file, the environment, or both.

Inside Airflow the config is the `kafka` connection's, built by the Kafka provider's hook. Everything
else (the CLI, `normalize --follow`, the standalone webhook receiver) calls `load_kafka_config`, which
layers, later winning:

1. a file: `--kafka-config PATH`, else `APISYNC_KAFKA_CONFIG=PATH`. JSON (a librdkafka config object, or
   an Airflow connection in JSON form, whose `extra` is used) or Java-style properties (`key=value`);
2. `APISYNC_KAFKA_<NAME>` variables, named the way Confluent's images name client settings: `_` stands
   for `.` and `__` for `_` (`APISYNC_KAFKA_SASL_PASSWORD` → `sasl.password`), so a secret can come from
   the environment while the rest sits in a file; `APISYNC_KAFKA_BOOTSTRAP` → `bootstrap.servers`;
3. `--bootstrap`.

Callback settings (`oauth_cb`, `error_cb`, ...) given as a dotted path are imported: the file and the
environment are the deployer's own, trusted like the command line. Amazon MSK IAM gets its OAUTHBEARER
token callback as the Kafka provider adds it (bootstrap servers on `kafka.<region>.amazonaws.com` with
`sasl.mechanism(s)=OAUTHBEARER`, no `oauth_cb` given). Errors name keys and line numbers, never values.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apisync.kafka.producer import ProducerConfigError, is_secret_key

CONFIG_FILE_VARIABLE = "APISYNC_KAFKA_CONFIG"
BOOTSTRAP_VARIABLE = "APISYNC_KAFKA_BOOTSTRAP"
ENV_PREFIX = "APISYNC_KAFKA_"
# APISYNC_KAFKA_* variables that configure apisync itself, not the client.
_NOT_CLIENT_SETTINGS = frozenset({CONFIG_FILE_VARIABLE, BOOTSTRAP_VARIABLE, "APISYNC_KAFKA_WATCH_CONN_ID"})
CALLBACK_KEYS = ("error_cb", "throttle_cb", "stats_cb", "log_cb", "oauth_cb", "on_commit")
# The Kafka provider's pattern for Amazon MSK bootstrap servers (provisioned and serverless, China too).
_MSK_BOOTSTRAP = re.compile(
    r"\.kafka(?:-serverless)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?(?::\d+)?(?=$|[,\s])", re.IGNORECASE)


class KafkaConfigError(ProducerConfigError):
    """The Kafka client config file or variables are unreadable; the message names where, never a value."""


def load_kafka_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                      bootstrap: str | None = None, default_bootstrap: str | None = None) -> dict[str, Any]:
    """The client config from `path` (else $APISYNC_KAFKA_CONFIG), APISYNC_KAFKA_* variables and `bootstrap`."""
    env = os.environ if env is None else env
    path = path or env.get(CONFIG_FILE_VARIABLE) or None
    config = read_config_file(Path(path)) if path else {}
    config.update(config_from_env(env))
    if bootstrap:
        config["bootstrap.servers"] = bootstrap
    if default_bootstrap and not str(config.get("bootstrap.servers") or "").strip():
        config["bootstrap.servers"] = default_bootstrap
    if not str(config.get("bootstrap.servers") or "").strip():
        raise KafkaConfigError(f"no Kafka bootstrap.servers: set it in {CONFIG_FILE_VARIABLE}'s file, "
                               f"{BOOTSTRAP_VARIABLE} or --bootstrap")
    return with_msk_iam_callback(resolve_callbacks(config))


def read_config_file(path: Path) -> dict[str, Any]:
    """A librdkafka config from a JSON or properties file (the first non-blank character decides)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KafkaConfigError(f"Kafka config file {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("{"):
        return _json_config(text, path)
    return _properties_config(text, path)


def _json_config(text: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:  # the message quotes no value, only where the syntax broke
        raise KafkaConfigError(f"Kafka config file {path}: not valid JSON (line {exc.lineno})") from None
    if isinstance(data, dict) and "conn_type" in data:  # an Airflow connection: its extra is the client config
        data = data.get("extra") or {}
        if isinstance(data, str):
            return _json_config(data, path)
    if not isinstance(data, dict) or not all(isinstance(v, str | int | float | bool) for v in data.values()):
        raise KafkaConfigError(f"Kafka config file {path}: expected an object of librdkafka settings "
                               "(strings, numbers, booleans)")
    return {str(k): v for k, v in data.items()}


def _properties_config(text: str, path: Path) -> dict[str, str]:
    """Java-style `key=value` (or `key: value`) lines; `#` and `!` start comments; a trailing `\\` continues."""
    config: dict[str, str] = {}
    lines = iter(enumerate(text.splitlines(), start=1))
    for number, raw in lines:
        line = raw.strip()
        while line.endswith("\\"):
            line = line[:-1] + next(lines, (number, ""))[1].strip()
        if not line or line[0] in "#!":
            continue
        match = re.match(r"([^=:\s]+)\s*[=:]\s*(.*)$", line)
        if not match:
            raise KafkaConfigError(f"Kafka config file {path}, line {number}: expected key=value")
        config[match.group(1)] = match.group(2)
    return config


def config_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """`APISYNC_KAFKA_<NAME>` variables as librdkafka settings (`_` → `.`, `__` → `_`)."""
    config = {}
    if env.get(BOOTSTRAP_VARIABLE, "").strip():
        config["bootstrap.servers"] = env[BOOTSTRAP_VARIABLE].strip()
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and name not in _NOT_CLIENT_SETTINGS and value != "":
            config[setting_name(name.removeprefix(ENV_PREFIX))] = value
    return config


def setting_name(variable_tail: str) -> str:
    """SASL_MECHANISMS → sasl.mechanisms; OAUTH__CB → oauth_cb."""
    return ".".join(part.replace("\0", "_") for part in variable_tail.lower().replace("__", "\0").split("_"))


def resolve_callbacks(config: dict[str, Any]) -> dict[str, Any]:
    """Import callback settings given as dotted paths (`package.module.function`)."""
    for key in CALLBACK_KEYS:
        value = config.get(key)
        if isinstance(value, str):
            module, _, name = value.rpartition(".")
            try:
                config[key] = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError):
                raise KafkaConfigError(f"Kafka config {key}: cannot import {value!r}") from None
    return config


def with_msk_iam_callback(config: dict[str, Any]) -> dict[str, Any]:
    """An OAUTHBEARER token callback for Amazon MSK IAM, as the Kafka provider adds it, unless one is set."""
    mechanism = str(config.get("sasl.mechanisms") or config.get("sasl.mechanism") or "").upper()
    found = _MSK_BOOTSTRAP.search(str(config.get("bootstrap.servers") or ""))
    if mechanism != "OAUTHBEARER" or not found or "oauth_cb" in config:
        return config
    try:
        importlib.import_module("aws_msk_iam_sasl_signer")
    except ImportError:
        raise KafkaConfigError("Amazon MSK IAM needs the signer: pip install aws-msk-iam-sasl-signer-python") from None
    config["oauth_cb"] = functools.partial(msk_iam_token, found.group("region"))
    return config


def msk_iam_token(region: str, _oauthbearer_config: str) -> tuple[str, float]:
    """An MSK IAM token and its expiry in epoch seconds (librdkafka's oauth_cb contract)."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    return token, expiry_ms / 1000


def describe(config: Mapping[str, Any]) -> str:
    """Where and how the client connects, for a log line: no secret, not even its length."""
    mechanism = config.get("sasl.mechanisms") or config.get("sasl.mechanism")
    user = config.get("sasl.username")
    parts = [str(config.get("security.protocol") or "PLAINTEXT")]
    if mechanism:
        parts.append(f"{mechanism}{f' as user {user!r}' if user else ''}")
    if callable(config.get("oauth_cb")):
        parts.append("token callback")
    secret_keys = sorted(k for k in config if is_secret_key(k))
    if secret_keys:
        parts.append(f"secrets set: {', '.join(secret_keys)}")
    return f"Kafka at {config.get('bootstrap.servers')} ({'; '.join(parts)})"
