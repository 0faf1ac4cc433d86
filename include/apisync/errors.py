"""The root of every apisync error, split into the two families a caller decides by.

`FatalError`: retrying cannot help (bad credentials, a broken config, unrepairable state); a person
must act. `RetriableError`: the same call may succeed later (a broker away, a rate limit, a run that
synced only the parts that answered). Every error class of the library and the Airflow plugin derives
from exactly one of them, so callers catch a family (`except FatalError`), never a list of classes;
the HTTP layer's `ApiError` family sits under both (`apisync.http.errors`).

This module imports nothing of apisync: every layer can import it.
"""

from __future__ import annotations


class ApisyncError(Exception):
    """Any error apisync raises on purpose; str() is one line a person understands, never a secret."""


class FatalError(ApisyncError):
    """Retrying cannot help: the task fails at once and someone must fix the cause."""


class RetriableError(ApisyncError):
    """The same call may succeed later: a task is retried with backoff."""

