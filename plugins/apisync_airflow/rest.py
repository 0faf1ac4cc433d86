"""Drive apisync's DAGs through Airflow's REST API (/api/v2), as the UI does: the demo and tests use it.

Every function takes an authenticated httpx.Client whose base URL ends in /api/v2. No Airflow import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apisync.errors import RetriableError

FINISHED = ("success", "failed")


class AirflowRestError(RetriableError):
    """Airflow did not reach the expected state in time."""


def wait_for_dags(client, dag_ids: Iterable[str], timeout: float = 180.0, sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Wait until the DAG processor has parsed every dag_id (the API answers 200 for it)."""
    pending, deadline = set(dag_ids), clock() + timeout
    while pending:
        pending = {d for d in pending if client.get(f"/dags/{d}").status_code != 200}
        if not pending:
            return
        if clock() >= deadline:
            errors = client.get("/importErrors").json().get("import_errors", [])
            detail = "; ".join(f"{e.get('filename')}: {str(e.get('stack_trace', ''))[-200:]}" for e in errors)
            raise AirflowRestError(f"DAGs not parsed after {timeout:.0f}s: {', '.join(sorted(pending))}"
                                   f"{' (import errors: ' + detail + ')' if detail else ''}")
        sleep(2)


def unpause(client, dag_id: str) -> None:
    client.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()


def trigger(client, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
    """Start a manual run with the given Params (the trigger form's values); returns the run id."""
    answer = client.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})})
    if answer.status_code >= 300:
        raise AirflowRestError(f"cannot trigger {dag_id}: HTTP {answer.status_code}: {answer.text[:300]}")
    return answer.json()["dag_run_id"]


def run_state(client, dag_id: str, run_id: str) -> str | None:
    return client.get(f"/dags/{dag_id}/dagRuns/{run_id}").json().get("state")


def wait_for_run(client, dag_id: str, run_id: str, timeout: float = 600.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> str:
    """Wait until the run finished; returns 'success' or 'failed'."""
    deadline = clock() + timeout
    while True:
        state = run_state(client, dag_id, run_id)
        if state in FINISHED:
            return state
        if clock() >= deadline:
            raise AirflowRestError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s: "
                                   f"{task_states(client, dag_id, run_id)}")
        sleep(3)


def task_states(client, dag_id: str, run_id: str) -> dict[str, str | None]:
    """{task_id or task_id[map_index]: state} of one run."""
    items = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}).json()
    return {(t["task_id"] if t.get("map_index", -1) < 0 else f"{t['task_id']}[{t['map_index']}]"): t.get("state")
            for t in items.get("task_instances", [])}


def xcom(client, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
    """A task's return value (its XCom)."""
    answer = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                        params={"map_index": map_index, "deserialize": True})
    answer.raise_for_status()
    return answer.json().get("value")


def task_log(client, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
    """The text of one try's log, one line per structured entry (event first, then its fields)."""
    answer = client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                        params={"map_index": map_index, "full_content": True}, headers={"Accept": "application/json"})
    answer.raise_for_status()
    return "\n".join(_log_line(entry) for entry in answer.json().get("content", []))


def _log_line(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return str(entry)
    rest_fields = " ".join(f"{k}={v}" for k, v in entry.items() if k != "event")
    return f"{entry.get('event', '')} {rest_fields}".strip()
