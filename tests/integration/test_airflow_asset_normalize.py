"""`<api>_normalize` in a real `airflow standalone`: the Kafka asset watchers in its triggerer start runs.

A signed webhook from the simulator goes through the plugin's receiver into `stripe.webhooks`; the watcher
sees it, the scheduler starts an asset-triggered run, and the run normalizes until idle: the record
appears with the simulator's content and the run ends by itself (success), never after a fixed time.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx
import orjson
import pytest

from apisync.kafka.reader import read_topic
from apisync_airflow import rest
from apisync_airflow.pools import ensure_pools
from devstack.airflow import AirflowStandalone, connection_env, demo_webhook_secret

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DEADLINE_S = 240.0  # generous: the dag processor registers the watchers, the triggerer starts them


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, kafka_bootstrap, redis_url, simulator_url):
    home = tmp_path_factory.mktemp("airflow-assets")
    env = {**connection_env(kafka_bootstrap, redis_url, simulator_url), "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           "APISYNC_RETRIES": "2", "APISYNC_RETRY_DELAY_S": "1", "APISYNC_MAX_RETRY_DELAY_S": "2"}
    server = AirflowStandalone(home, env)
    try:
        server.start(timeout=400)
        with server.client() as client:
            ensure_pools(client)
            rest.wait_for_dags(client, ["stripe_normalize"], timeout=240)
        yield server
    finally:
        server.stop()


def _runs(api: httpx.Client) -> list[dict]:
    return api.get("/dags/stripe_normalize/dagRuns", params={"limit": 100}).json()["dag_runs"]


def _record_matches_truth(kafka_bootstrap: str, sim: httpx.Client, key: str) -> bool:
    newest = None
    for msg in read_topic({"bootstrap.servers": kafka_bootstrap}, "stripe.records", timeout=30):
        if msg.key().decode() == key:
            newest = orjson.loads(msg.value()) if msg.value() is not None else None
    expected = sim.get("/_admin/truth/stripe").json()["objects"]["customer"][key.split(".", 2)[2]]
    # data, and a version at least the truth's: a customer changed through a sub-resource (a discount) is
    # re-fetched and versioned by the response's Date − 1 ms
    return newest is not None and newest["data"] == expected["data"] and newest["version"] >= expected["version"]


def test_a_webhook_starts_an_asset_triggered_run_that_normalizes_until_idle(
        airflow, clean_slate, kafka_bootstrap, simulator_url):
    clean_slate(seed=13, objects=5)
    sim = httpx.Client(base_url=simulator_url, timeout=10)
    sim.post("/_admin/config", json={"webhooks": {"stripe": {
        "url": f"{airflow.url}/apisync/webhooks/stripe", "secrets": [demo_webhook_secret("stripe")]}}}
             ).raise_for_status()
    with airflow.client() as api:
        rest.unpause(api, "stripe_normalize")
        try:
            # The watcher's group starts at the newest offset once it has joined: keep changing a customer
            # until a run has been triggered (each change sends one signed webhook).
            deadline, key = time.monotonic() + DEADLINE_S, None
            while time.monotonic() < deadline and not _runs(api):
                done = sim.post("/_admin/mutate", json={"api": "stripe", "count": 1, "kinds": ["update"],
                                                        "collection": "customer"}).json()["mutations"]
                key = f"stripe.customer.{done[0]['id']}"
                time.sleep(5)
            runs = _runs(api)
            assert runs, "no stripe_normalize run was triggered by the webhooks"
            assert {r["run_type"] for r in runs} == {"asset_triggered"}
            # The last change's webhook starts (or queues) a run of its own, which normalizes it.
            while time.monotonic() < deadline and not _record_matches_truth(kafka_bootstrap, sim, key):
                time.sleep(2)
            assert _record_matches_truth(kafka_bootstrap, sim, key), f"{key} never reached stripe.records"
            # Every run ends on its own, once idle.
            while time.monotonic() < deadline and any(r["state"] in ("queued", "running") for r in _runs(api)):
                time.sleep(2)
            states = {r["dag_run_id"]: r["state"] for r in _runs(api)}
            assert set(states.values()) == {"success"}, states
            first = sorted(_runs(api), key=lambda r: r["start_date"])[0]
            # asset-triggered run ids hold "+" and ":": quoted, or the server reads another id
            log = rest.task_log(api, "stripe_normalize", quote(first["dag_run_id"], safe=""), "normalize")
            assert "stripe normalizer: until idle" in log
        finally:
            api.patch("/dags/stripe_normalize", json={"is_paused": True})
            sim.post("/_admin/config", json={"webhooks": {"stripe": {"url": None}}})
