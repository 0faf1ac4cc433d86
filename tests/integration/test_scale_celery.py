"""Scale-out for real, without Docker (make test-scale): CeleryExecutor on PostgreSQL, 2 Celery workers,
3 Kafka brokers with replication factor 3.

All three backfills run at once, then the simulator changes objects and the incremental DAGs run, then
the normalizers; `<api>.records` must equal the simulator's truth. Meanwhile a Redis MONITOR connection
(outside every worker) records each grant of the shared rate limiter: the `HSET ... tat` its Lua script
runs only when it grants, timed by the `TIME` the script read. In any 1-second window the grants of one
account may not exceed rate + burst (the GCRA bound, apisync/http/ratelimit.py), summed over both workers.

The check can fail: `APISYNC_SCALE_TEST_LIMITER_RATE=100000 make test-scale` configures the workers'
limiter (the connections' `rate_per_s`) far above the budget the test checks, i.e. a limiter that does
not limit; the run then fails on the grant count.
"""

from __future__ import annotations

import json
import os
import threading
import time
from itertools import combinations

import httpx
import pytest
import redis as redis_lib
from sync_helpers import history, record_problems, truth

from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.topics import Layout, declared_topics
from apisync_airflow import rest
from apisync_airflow.pools import ensure_pools
from devstack.airflow import connection_env
from devstack.airflow_celery import AirflowCeleryStack
from devstack.grants import max_in_window
from devstack.kafka import KafkaCluster
from devstack.redis import RedisServer

pytestmark = [pytest.mark.scale, pytest.mark.timeout(900)]

APIS = ("stripe", "github", "salesforce")
COLLECTIONS = {"stripe": ("customer", "subscription", "invoice", "charge"),
               "github": ("issue", "pull_request", "issue_comment"),
               "salesforce": ("account", "contact", "opportunity")}
# Polling cannot see GitHub deletions (webhooks and reconcile do), so GitHub gets creates and updates.
KINDS = {"stripe": ["create", "update", "delete"], "github": ["create", "update"],
         "salesforce": ["create", "update", "delete"]}
OBJECTS, PAGE_SIZE = 120, 10  # 12 pages per collection under the shared 5 req/s
RATE, BURST = 5.0, 2  # per API account; small, so two workers really compete for it
LIMITER_RATE = float(os.environ.get("APISYNC_SCALE_TEST_LIMITER_RATE") or RATE)
# Stripe has 4 collections, the stripe pool 4 slots, the stack 2 workers of 2 slots: while the simulator holds
# Stripe's requests, Stripe's backfill tasks fill both workers, so they overlap by construction.
OVERLAP_API = "stripe"


class GrantRecorder:
    """Every grant of the shared limiters, seen by Redis MONITOR: (api, account, Redis time in s)."""

    def __init__(self, url: str) -> None:
        self.grants: list[tuple[str, str, float]] = []
        self._conn = redis_lib.Redis.from_url(url)
        self._monitor = self._conn.monitor().__enter__()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        script_time = None
        try:
            for entry in self._monitor.listen():
                command = entry["command"]
                if entry.get("client_type") != "lua":
                    continue
                if command == "TIME":
                    script_time = entry["time"]  # the script's clock: the time its grant is about
                elif command.startswith("HSET apisync:ratelimit:") and command.split(" ")[2] == "tat":
                    _, api, account, _state = command.split(" ")[1].rsplit(":", 3)[-4:]
                    self.grants.append((api, account, script_time))
        except (redis_lib.ConnectionError, OSError, ValueError):
            pass  # stop() closed the connection

    def stop(self) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(timeout=5)

    def per_account(self) -> dict[tuple[str, str], list[float]]:
        accounts: dict[tuple[str, str], list[float]] = {}
        for api, account, at in self.grants:
            accounts.setdefault((api, account), []).append(at)
        return accounts


def _connections(kafka_bootstrap: str, redis_url: str, simulator_url: str) -> dict[str, str]:
    """The devstack connections, each API's budget set to the test's (or to LIMITER_RATE), small pages."""
    env = connection_env(kafka_bootstrap, redis_url, simulator_url)
    for api in APIS:
        name = f"AIRFLOW_CONN_{api.upper()}_DEFAULT"
        conn = json.loads(env[name])
        conn["extra"].update(rate_per_s=LIMITER_RATE, burst=BURST, page_size=PAGE_SIZE)
        env[name] = json.dumps(conn)
    return env


@pytest.fixture(scope="module")
def scale(tmp_path_factory, simulator_url):
    """3 brokers (RF 3), Redis (apisync on db 0, Celery's broker on db 1) and the Celery stack."""
    state = tmp_path_factory.mktemp("scale")
    layout = Layout(replication_factor=3)
    kafka = KafkaCluster(state / "kafka", size=3).start()
    redis = RedisServer(state / "redis").start()
    airflow = None
    try:
        ensure(admin_client({"bootstrap.servers": kafka.bootstrap}), declared_topics(layout))
        env = {**_connections(kafka.bootstrap, redis.url, simulator_url),
               "APISYNC_REPLICATION_FACTOR": str(layout.replication_factor),
               "APISYNC_RETRIES": "2", "APISYNC_RETRY_DELAY_S": "2", "APISYNC_MAX_RETRY_DELAY_S": "4",
               "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"}
        airflow = AirflowCeleryStack(state, env, broker_url=redis.url.rsplit("/", 1)[0] + "/1", workers=2)
        airflow.start(timeout=500)
        with airflow.client() as client:
            ensure_pools(client)
            rest.wait_for_dags(client, [f"{api}_{kind}" for api in APIS for kind in ("backfill", "incremental")],
                               timeout=300)
        yield {"kafka": kafka, "redis_url": redis.url, "airflow": airflow}
    finally:
        if airflow is not None:
            airflow.stop()
        redis.stop()
        kafka.stop()


def _reset_simulator(simulator_url: str) -> None:
    httpx.post(f"{simulator_url}/_admin/reset", json={"seed": 13, "objects": OBJECTS}, timeout=30).raise_for_status()
    httpx.delete(f"{simulator_url}/_admin/faults", timeout=10)
    httpx.post(f"{simulator_url}/_admin/config", timeout=10, json={"mutation_rate_per_s": 0}).raise_for_status()


def _run_all(api_client, dag_ids: list[str], timeout: float = 420, meanwhile=None) -> dict[str, str]:
    """Trigger every DAG at once, call `meanwhile(runs)`, wait for all; pause the scheduled ones again afterwards."""
    runs = {}
    for dag_id in dag_ids:
        rest.unpause(api_client, dag_id)
        runs[dag_id] = rest.trigger(api_client, dag_id)
    try:
        if meanwhile is not None:
            meanwhile(runs)
        for dag_id, run_id in runs.items():
            state = rest.wait_for_run(api_client, dag_id, run_id, timeout=timeout)
            assert state == "success", (dag_id, rest.task_states(api_client, dag_id, run_id))
    finally:
        for dag_id in dag_ids:
            api_client.patch(f"/dags/{dag_id}", json={"is_paused": True})
    return runs


def _mutate(simulator_url: str) -> None:
    """A burst of changes per API, one simulated second apart (whole-second versions, see the README)."""
    sim = httpx.Client(base_url=simulator_url, timeout=30)
    for _ in range(6):
        for api in APIS:
            sim.post("/_admin/mutate", json={"api": api, "count": 2, "kinds": KINDS[api]}).raise_for_status()
        sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
    # Let Stripe's late events surface and Salesforce's open transactions commit before polling.
    config = sim.get("/_admin/config").json()
    time.sleep(1.1 + max(config["stripe_events_lag_s"], config["salesforce_late_commits"]["lag_s"]))


def _held_until_overlap(api_client, simulator_url: str, workers: list[str]):
    """A `meanwhile` for _run_all: hold OVERLAP_API's requests until its backfill runs on every worker at once."""
    sim = httpx.Client(base_url=simulator_url, timeout=30)
    sim.post("/_admin/faults", json={"kind": "hold", "api": OVERLAP_API, "count": None}).raise_for_status()

    def wait(runs: dict[str, str]) -> None:
        dag_id, deadline = f"{OVERLAP_API}_backfill", time.monotonic() + 300
        try:
            while True:
                running = {ti["hostname"] for ti in _task_instances(api_client, dag_id, runs[dag_id])
                           if ti["task_id"] == "backfill" and ti["state"] == "running"}
                if running >= set(workers):
                    return
                assert time.monotonic() < deadline, f"{dag_id} never ran on every worker at once: {running}"
                time.sleep(1)
        finally:
            sim.delete("/_admin/faults").raise_for_status()
    return wait


def _task_instances(api_client, dag_id: str, run_id: str) -> list[dict]:
    return api_client.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                          params={"limit": 100}).json()["task_instances"]


def test_three_backfills_then_incrementals_on_two_celery_workers(scale, simulator_url):
    _reset_simulator(simulator_url)
    kafka_config = {"bootstrap.servers": scale["kafka"].bootstrap}
    recorder = GrantRecorder(scale["redis_url"])
    started = time.monotonic()
    try:
        with scale["airflow"].client() as api_client:
            backfills = _run_all(api_client, [f"{api}_backfill" for api in APIS],
                                 meanwhile=_held_until_overlap(api_client, simulator_url,
                                                                    scale["airflow"].worker_names()))
            backfilled_s = time.monotonic() - started
            _mutate(simulator_url)
            _run_all(api_client, [f"{api}_incremental" for api in APIS])
            _run_all(api_client, [f"{api}_normalize" for api in APIS])
            instances = [ti for dag_id, run_id in backfills.items()
                         for ti in _task_instances(api_client, dag_id, run_id) if ti["task_id"] == "backfill"]
    finally:
        recorder.stop()
    print(f"\nbackfills {backfilled_s:.0f}s, whole pipeline {time.monotonic() - started:.0f}s")

    problems = {api: record_problems(api, COLLECTIONS[api], history(kafka_config, f"{api}.records"),
                                     truth(simulator_url, api)) for api in APIS}
    assert problems == {api: [] for api in APIS}

    # Both workers ran backfill tasks, and tasks of one API overlapped on different workers.
    assert {ti["hostname"] for ti in instances} == set(scale["airflow"].worker_names())
    assert _overlaps_across_workers(instances), "no two tasks of one API ran at once on different workers"

    bound = RATE + BURST
    peaks = {f"{api}/{account}": (len(times), max_in_window(times))
             for (api, account), times in recorder.per_account().items() if api in APIS}
    print("grants per account (total, most in any 1 s window), bound", bound, peaks)
    assert set(peaks) == {f"{api}/default" for api in APIS}, peaks  # every budget was seen granting
    over = {account: peak for account, (_total, peak) in peaks.items() if peak > bound}
    assert over == {}, f"more than rate + burst = {bound:g} grants in a 1-second window: {over}"


def _overlaps_across_workers(instances: list[dict]) -> list[tuple[str, str, str]]:
    """(dag, worker, worker) for each pair of tasks of one DAG that ran at the same time on two workers."""
    found = []
    for a, b in combinations(instances, 2):
        if a["dag_id"] == b["dag_id"] and a["hostname"] != b["hostname"] \
                and a["start_date"] < b["end_date"] and b["start_date"] < a["end_date"]:
            found.append((a["dag_id"], a["hostname"], b["hostname"]))
    return found
