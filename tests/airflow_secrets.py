"""Connections kept only in a secrets backend, as with Vault or AWS Secrets Manager (no AIRFLOW_CONN_*
variable): Airflow's local-filesystem backend reading a JSON file the test writes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def connections_file_backend(monkeypatch, path: Path, shadowing: Iterable[str] = ()) -> Iterator[Path]:
    """Airflow's secrets backend reads connections from `path` (the test writes it, before or during) while
    the context is open; the `AIRFLOW_CONN_*` variables of the `shadowing` connection ids are removed, since
    a variable would be found first."""
    from airflow.sdk.configuration import clear_secrets_backends_cache

    for conn_id in shadowing:
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({"connections_file_path": str(path)}))
    clear_secrets_backends_cache()
    try:
        yield path
    finally:
        clear_secrets_backends_cache()  # the next test's lookups must not keep this backend
