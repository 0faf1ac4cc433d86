"""Before a run touches Kafka: can this client config reach the cluster, and does it accept the login?

librdkafka retries a refused SASL login forever and only logs it, so a wrong password would surface
30 s later as "Timed out waiting for operation" or "Broker transport failure". `check_kafka` asks
for metadata once and turns a refused login into one clear line at once. Credentials never appear in
it: librdkafka does not print them, and any secret value of the config is masked on top.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from apisync.errors import FatalError
from apisync.kafka.producer import client_config, is_secret_key

log = logging.getLogger("apisync.kafka")
_AUTH_CODES = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)


class KafkaAuthenticationError(FatalError):
    """The brokers refused the client's credentials; retrying with the same ones cannot help."""


def check_kafka(config: Mapping[str, Any], timeout: float = 10.0) -> None:
    """Raise KafkaAuthenticationError (login refused) as soon as the broker says so; else return once
    metadata answers. Unreachable brokers are left to the caller's own timeouts and retries."""
    conf = client_config(config)
    refused: list[KafkaError] = []
    admin = AdminClient({**conf, "error_cb": lambda err: refused.append(err) if err.code() in _AUTH_CODES else None,
                         "logger": log})
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=0.5)
            return
        except KafkaException as exc:
            if not refused and exc.args and exc.args[0].code() in _AUTH_CODES:
                refused.append(exc.args[0])
        admin.poll(0)  # serves error_cb
        if refused:
            raise KafkaAuthenticationError(authentication_message(conf, refused[0].str())) from None
        if time.monotonic() >= deadline:
            return  # not an authentication problem: the run's own calls report it in their terms


def authentication_message(conf: Mapping[str, Any], reason: str) -> str:
    """One line: where, which mechanism and user, what the broker said; secrets masked."""
    mechanism = conf.get("sasl.mechanisms") or conf.get("sasl.mechanism") or "?"
    user = conf.get("sasl.username")
    who = f" as user {user!r}" if user else ""
    # "sasl_plaintext://host:port/bootstrap: SASL authentication error: ... (after 301ms in state AUTH_REQ)"
    said = re.sub(r" \(after \d+ms in state \w+\)", "", re.sub(r"^\S+://\S+: ", "", reason.strip()))
    line = (f"Kafka at {conf.get('bootstrap.servers')} refused the login ({conf.get('security.protocol', '?')}, "
            f"{mechanism}{who}): {said.splitlines()[0] if said else 'authentication failed'}; "
            "check the Kafka connection's credentials")
    for key, value in conf.items():
        if isinstance(value, str) and len(value) >= 3 and is_secret_key(key):
            line = line.replace(value, "***")
    return line
