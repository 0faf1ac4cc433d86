"""apisync's DAGs in a real `airflow standalone` against real Kafka, Redis and the API simulator.

One Airflow start for the module (about 90 s here). Runs are triggered through the REST API with
Params, as the UI does. Retry delays are shortened through the env the DAG factory reads.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from sync_helpers import live_mismatches, settled_read, truth

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import declared_topics
from apisync_airflow import rest
from apisync_airflow.pools import ensure_pools
from devstack.airflow import AirflowStandalone, connection_env
from webhook_signing import sign_github

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
GITHUB_SECRET = "airflow-it-secret"
ORM_BLOCKED = "Direct database access via the ORM is not allowed"


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, kafka_bootstrap, redis_url, simulator_url):
    """A running Airflow with apisync's DAGs, pools and plugin; stopped at module end."""
    home = tmp_path_factory.mktemp("airflow-it")
    env = {
        **connection_env(kafka_bootstrap, redis_url, simulator_url),
        "APISYNC_RETRIES": "2", "APISYNC_RETRY_DELAY_S": "1", "APISYNC_MAX_RETRY_DELAY_S": "2",
        "APISYNC_ALERT_FILE": str(home / "alerts.jsonl"),
        "APISYNC_WEBHOOK_SECRETS_GITHUB": GITHUB_SECRET,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    server = AirflowStandalone(home, env, dags_folder=_dags_with_orm_canary(home))
    try:
        server.start(timeout=400)
        with server.client() as client:
            ensure_pools(client)
            rest.wait_for_dags(client, ["stripe_backfill", "github_backfill"], timeout=240)
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(airflow):
    with airflow.client() as client:
        yield client


def records_by_key(kafka_bootstrap: str, api_name: str) -> dict[str, dict | None]:
    """The latest `<api>.records` value per key (None = tombstone), as a compacted reader sees it."""
    latest: dict[str, dict | None] = {}
    for msg in settled_read({"bootstrap.servers": kafka_bootstrap}, f"{api_name}.records"):
        latest[msg.key().decode()] = orjson.loads(msg.value()) if msg.value() is not None else None
    return latest


def normalize_until_idle(api, api_name: str) -> None:
    """One `<api>_normalize` run, triggered as a person would; it ends once every input partition is read."""
    rest.unpause(api, f"{api_name}_normalize")
    try:
        run_id = rest.trigger(api, f"{api_name}_normalize")
        assert rest.wait_for_run(api, f"{api_name}_normalize", run_id, timeout=300) == "success"
    finally:  # its asset watchers must not start runs that race later tests' topic resets
        api.patch(f"/dags/{api_name}_normalize", json={"is_paused": True})


def test_backfill_with_params_delivers_the_ground_truth(api, clean_slate, kafka_bootstrap, simulator_url):
    clean_slate(seed=5, objects=40)
    chosen = ["customer", "invoice"]
    rest.unpause(api, "stripe_backfill")
    run_id = rest.trigger(api, "stripe_backfill", {"collections": chosen})
    assert rest.wait_for_run(api, "stripe_backfill", run_id, timeout=480) == "success", \
        rest.task_states(api, "stripe_backfill", run_id)
    normalize_until_idle(api, "stripe")

    states = rest.task_states(api, "stripe_backfill", run_id)
    assert sorted(k for k in states if k.startswith("backfill")) == ["backfill[0]", "backfill[1]"]
    records = records_by_key(kafka_bootstrap, "stripe")
    assert live_mismatches("stripe", chosen, records, truth(simulator_url, "stripe")) == []
    assert not any(".subscription." in key or ".charge." in key for key in records), "unchosen collection synced"

    summary = rest.xcom(api, "stripe_backfill", run_id, "backfill", map_index=0)
    assert (summary["collection"], summary["job"]) == ("customer", "backfill")
    assert summary["records"] >= len(truth(simulator_url, "stripe")["objects"]["customer"])
    assert "data" not in summary  # counts and cursors only, never payloads
    log = rest.task_log(api, "stripe_backfill", run_id, "backfill", map_index=0)
    assert "stripe.customer backfill progress: pages=" in log
    assert ORM_BLOCKED not in log


def test_incremental_syncs_backfilled_collections_and_skips_the_rest(api, clean_slate, kafka_bootstrap,
                                                                     simulator_url):
    clean_slate(seed=7, objects=15)
    rest.unpause(api, "stripe_backfill")
    backfill = rest.trigger(api, "stripe_backfill", {"collections": ["customer"]})
    assert rest.wait_for_run(api, "stripe_backfill", backfill, timeout=300) == "success"
    changed = httpx.post(f"{simulator_url}/_admin/mutate", timeout=10, json={
        "api": "stripe", "count": 3, "kinds": ["update"], "collection": "customer"}).json()["mutations"]
    rest.unpause(api, "stripe_incremental")
    try:
        run_id = rest.trigger(api, "stripe_incremental")
        assert rest.wait_for_run(api, "stripe_incremental", run_id, timeout=300) == "success"
    finally:
        # Scheduled runs every few minutes must not race later tests' topic resets.
        api.patch("/dags/stripe_incremental", json={"is_paused": True})
    states = rest.task_states(api, "stripe_incremental", run_id)
    # map indexes follow the registry: customer, subscription, invoice, charge
    assert states == {"incremental[0]": "success", "incremental[1]": "skipped",
                      "incremental[2]": "skipped", "incremental[3]": "skipped"}
    skipped_log = rest.task_log(api, "stripe_incremental", run_id, "incremental", map_index=1)
    assert "skipping incremental sync, the backfill has not finished yet" in skipped_log
    polled = {orjson.loads(m.value())["id"] for m in settled_read({"bootstrap.servers": kafka_bootstrap},
                                                                   "stripe.changes")
              if orjson.loads(m.value())["source"] == "poll"}
    assert {m["id"] for m in changed} <= polled


def test_a_task_that_keeps_failing_ends_failed_and_alerts(airflow, api, clean_slate, simulator_url):
    clean_slate(seed=6, objects=10)
    httpx.post(f"{simulator_url}/_admin/faults", json={"kind": "http_500", "api": "github", "count": None},
               timeout=10).raise_for_status()
    try:
        rest.unpause(api, "github_backfill")
        run_id = rest.trigger(api, "github_backfill", {"collections": ["issue"]})
        assert rest.wait_for_run(api, "github_backfill", run_id, timeout=420) == "failed"
    finally:
        httpx.delete(f"{simulator_url}/_admin/faults", timeout=10)
    states = rest.task_states(api, "github_backfill", run_id)
    assert states["backfill[0]"] == "failed"
    # retries=2: the third try is the last one and its log names the API error
    last_try = rest.task_log(api, "github_backfill", run_id, "backfill", try_number=3, map_index=0)
    assert "HTTP 500" in last_try
    alerts = [json.loads(line) for line in (airflow.home.parent / "alerts.jsonl").read_text().splitlines()]
    mine = [a for a in alerts if a["run_id"] == run_id]
    assert len(mine) == 1, alerts  # one alert when the task finally failed, none per retry
    assert (mine[0]["dag_id"], mine[0]["task_id"], mine[0]["try_number"]) == ("github_backfill", "backfill", 3)
    assert "HTTP 500" in mine[0]["error"] and "/dags/github_backfill/runs/" in mine[0]["log_url"]


def test_webhook_posted_to_the_api_server_lands_in_kafka(airflow, kafka_bootstrap):
    ensure(admin_client({"bootstrap.servers": kafka_bootstrap}), declared_topics(apis=["github"]))
    delivery = str(uuid.uuid4())
    body = orjson.dumps({"action": "edited", "marker": delivery})
    answer = httpx.post(f"{airflow.url}/apisync/webhooks/github", content=body, timeout=30, headers={
        "X-Hub-Signature-256": sign_github(GITHUB_SECRET, body), "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    forged = httpx.post(f"{airflow.url}/apisync/webhooks/github", content=body, timeout=30,
                        headers={"X-Hub-Signature-256": sign_github("wrong", body)})
    assert forged.status_code == 401
    stored = [m for m in read_topic({"bootstrap.servers": kafka_bootstrap}, "github.webhooks", timeout=60)
              if m.value() == body]
    assert len(stored) == 1
    assert dict(stored[0].headers())["x-github-delivery"] == delivery.encode()


def test_pools_are_updated_when_they_exist(api):
    # The fixture created them; a second run (a restarted demo) must update, not fail.
    assert "apisync_stripe" in ensure_pools(api)
    assert api.get("/pools/apisync_stripe").json()["slots"] == 4


def test_no_task_touched_the_metadata_db(airflow, api):
    # Airflow's task runner blocks ORM access with a RuntimeError; a task that tried would log it.
    # The canary proves the block is active in this Airflow (dag.test() would not enforce it).
    rest.unpause(api, "orm_canary")
    canary = rest.trigger(api, "orm_canary")
    assert rest.wait_for_run(api, "orm_canary", canary, timeout=300) == "failed"
    assert ORM_BLOCKED in rest.task_log(api, "orm_canary", canary, "query_the_metadata_db")
    logs = list((airflow.home / "logs").rglob("*.log")) if (airflow.home / "logs").exists() else []
    ours = [p for p in logs if "orm_canary" not in str(p)]
    assert ours, "no apisync task logs found"
    offenders = [str(p) for p in ours if ORM_BLOCKED in p.read_text(errors="replace")]
    assert offenders == []


ORM_CANARY = """
from airflow.sdk import dag, task


@dag(schedule=None, tags=["test"])
def orm_canary():
    @task(retries=0)
    def query_the_metadata_db():
        from sqlalchemy import text
        from airflow.settings import Session

        Session().execute(text("select 1"))

    query_the_metadata_db()


orm_canary()
"""


def _dags_with_orm_canary(home) -> Path:
    """apisync's DAG files plus a canary DAG that touches the ORM, in a folder for this test only."""
    folder = home / "dags"
    folder.mkdir()
    for path in (ROOT / "dags").glob("*.py"):
        (folder / path.name).symlink_to(path)
    (folder / "orm_canary.py").write_text(ORM_CANARY)
    return folder
