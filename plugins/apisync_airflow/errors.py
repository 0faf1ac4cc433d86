"""Translate include/apisync errors into Airflow terms, in one place.

Fatal (retrying cannot help: bad credentials, a broken config, an unrepairable topic) becomes
AirflowFailException, so the task fails at once. Everything else is re-raised as it is, so Airflow
retries it with backoff. The library already sorted HTTP statuses into fatal / retriable at its edge.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)

log = logging.getLogger("apisync.airflow")

# (module, class) pairs, resolved lazily: a missing optional module must not break the others.
FATAL = (
    ("apisync.http.errors", "FatalError"),
    ("apisync.kafka.producer", "ProducerConfigError"),
    ("apisync.kafka.connect", "KafkaAuthenticationError"),
    ("apisync_airflow.hooks", "ConnectionConfigError"),
)


class UnrepairedDrift(Exception):
    """Topic drift that ensure() cannot repair by itself (an operator must act)."""


def fatal_types() -> tuple[type[BaseException], ...]:
    """The exception classes that must not be retried (those whose modules exist)."""
    # ImportError: a missing engine feature is a deployment problem a retry cannot fix.
    found: list[type[BaseException]] = [AirflowNotFoundException, UnrepairedDrift, ImportError]
    for module, name in FATAL:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def is_fatal(exc: BaseException) -> bool:
    """True when a retry cannot help."""
    return isinstance(exc, fatal_types())


@contextmanager
def airflow_errors(what: str) -> Iterator[None]:
    """Run a library call; fatal errors fail the task, the rest propagate for a retry."""
    try:
        yield
    except (AirflowSkipException, AirflowFailException):
        raise
    except Exception as exc:
        if is_fatal(exc):
            log.error("%s failed, not retrying: %s", what, exc)
            raise AirflowFailException(f"{what}: {exc}") from exc
        if isinstance(exc, AirflowException):
            raise
        log.warning("%s failed with a retriable error (Airflow retries while tries remain): %s", what, exc)
        raise
