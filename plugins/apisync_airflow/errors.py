"""Translate apisync errors into Airflow terms, in one place, by family.

Fatal (retrying cannot help: bad credentials, a broken config, an unrepairable topic) becomes
AirflowFailException, so the task fails at once. Everything else is re-raised as it is, so Airflow
retries it with backoff. Each error class says its family once, where it is defined (`apisync.errors`);
the HTTP layer sorted statuses into fatal / retriable at its edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)

from apisync.errors import FatalError

log = logging.getLogger("apisync.airflow")

# Airflow's missing connection or variable is a deployment problem a retry cannot fix, and so is
# ImportError: a missing engine feature.
FATAL = (FatalError, AirflowNotFoundException, ImportError)


class UnrepairedDrift(FatalError):
    """Topic drift that ensure() cannot repair by itself (an operator must act)."""


def is_fatal(exc: BaseException) -> bool:
    """True when a retry cannot help."""
    return isinstance(exc, FATAL)


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
