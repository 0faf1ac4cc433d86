"""DAG integrity: every DAG file imports, has tags and retries >= 2, and looks nothing up at parse time."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "dags"


class ParseTimeLookup(RuntimeError):
    """A DAG file asked for a connection, a variable or the metadata DB while being parsed."""


@pytest.fixture
def forbid_parse_time_lookups(monkeypatch):
    """Make every connection/variable/DB lookup raise, and record that it was attempted."""
    from airflow.sdk import Connection, Variable
    from airflow.sdk.bases.hook import BaseHook
    from airflow.utils import session

    attempts: list[str] = []

    def trap(what):
        def raiser(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if args else ''}")
            raise ParseTimeLookup(f"{what} at parse time")
        return raiser

    monkeypatch.setattr(Variable, "get", classmethod(trap("Variable.get")))
    monkeypatch.setattr(Connection, "get", classmethod(trap("Connection.get")))
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(trap("BaseHook.get_connection")))
    monkeypatch.setattr(session, "create_session", trap("metadata DB session"))
    return attempts


def load(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), safe_mode=False)


def dag_files() -> list[Path]:
    return sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", dag_files(), ids=lambda p: p.name)
def test_dag_file_imports_cleanly(path, forbid_parse_time_lookups):
    bag = load(path)
    assert bag.import_errors == {}
    assert forbid_parse_time_lookups == []
    assert bag.dags, f"{path.name} defines no DAG"


@pytest.mark.parametrize("path", dag_files(), ids=lambda p: p.name)
def test_every_dag_has_tags_docs_and_retries(path):
    for dag_id, dag in load(path).dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"


def test_the_guard_catches_a_variable_read_at_parse_time(tmp_path, forbid_parse_time_lookups):
    (tmp_path / "bad_dag.py").write_text(textwrap.dedent("""
        from airflow.sdk import DAG, Variable
        interval = Variable.get("interval")
        with DAG("bad", schedule=None, tags=["x"]):
            pass
    """))
    bag = load(tmp_path)
    assert "bad" not in bag.dags
    assert forbid_parse_time_lookups and forbid_parse_time_lookups[0].startswith("Variable.get")


@pytest.mark.parametrize("path", dag_files(), ids=lambda p: p.name)
def test_every_task_backs_off_times_out_and_alerts(path):
    for dag_id, dag in load(path).dags.items():
        for task in dag.tasks:
            where = f"{dag_id}.{task.task_id}"
            assert task.retry_exponential_backoff, f"{where} retries without exponential backoff"
            assert task.execution_timeout is not None, f"{where} has no execution_timeout"
            assert task.on_failure_callback, f"{where} raises no alert on failure"


def test_the_expected_dags_exist():
    from apisync.registry import APIS

    found = {dag_id for path in dag_files() for dag_id in load(path).dags}
    expected = {f"{api}_{kind}" for api in APIS
                for kind in ("backfill", "incremental", "normalize", "reconcile", "audit")}
    assert found == expected | {"kafka_topics"}
