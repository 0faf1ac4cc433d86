"""`make demo`: the whole pipeline on one machine, up until Ctrl-C, then nothing left behind."""

from __future__ import annotations

import time
from contextlib import ExitStack

from devstack.airflow import (
    ADMIN_USER,
    DEMO_OUTBOUND_SECRET,
    AirflowStandalone,
    connection_env,
    demo_apis,
    demo_webhook_secret,
)
from devstack.kafka import KafkaCluster
from devstack.normalizers import FollowNormalizers
from devstack.paths import state_dir
from devstack.redis import RedisServer
from devstack.simulator import SimulatorServer

WEBHOOK_PATH = "/apisync/webhooks"  # where the apisync plugin mounts the receiver on the api-server


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def run_demo() -> None:
    """Start everything, run the backfills, report, then wait for Ctrl-C / SIGTERM."""
    state = state_dir()
    with ExitStack() as stack:
        kafka = KafkaCluster(state / "kafka").start()
        stack.callback(kafka.stop)
        say(f"Kafka {kafka.bootstrap} (data in {state / 'kafka'})")
        redis = RedisServer(state / "redis", persistent=True).start()
        stack.callback(redis.stop)
        say(f"Redis {redis.url}")
        simulator = _start_simulator(state, stack)
        # The follow services normalize: the normalize DAGs stay unscheduled so nothing competes with them.
        airflow = AirflowStandalone(state, {**connection_env(kafka.bootstrap, redis.url, simulator.url),
                                            "APISYNC_NORMALIZE_SCHEDULE": "none"})
        _ensure_topics(kafka.bootstrap)
        _start_normalizers(state, kafka.bootstrap, redis.url, simulator.url, stack)
        say("starting Airflow (first start initialises its database: a minute or two)")
        airflow.start()
        stack.callback(airflow.stop)
        _point_webhooks_at(simulator.url, airflow.url)
        _banner(airflow)
        _run_backfills(airflow, kafka.bootstrap)
        say("up; press Ctrl-C to stop every process the demo started")
        while True:
            time.sleep(1)


def _start_simulator(state, stack) -> SimulatorServer:
    simulator = SimulatorServer(state / "simulator").start()
    stack.callback(simulator.stop)
    say(f"API simulator {simulator.url}")
    return simulator


def _start_normalizers(state, bootstrap: str, redis_url: str, simulator_url: str, stack) -> None:
    normalizers = FollowNormalizers(state, demo_apis(), bootstrap, redis_url, simulator_url)
    stack.callback(normalizers.stop)  # registered first: a normalizer that fails to start is stopped too
    normalizers.start()
    say(f"normalizers: `python -m apisync normalize <api> --follow` for {', '.join(demo_apis())} "
        f"(logs in {normalizers.logs})")


def _ensure_topics(bootstrap: str) -> None:
    from apisync.kafka.admin import admin_client, ensure
    from apisync.kafka.topics import declared_topics

    report = ensure(admin_client({"bootstrap.servers": bootstrap}), declared_topics())
    say(f"topics: {len(report.created)} created, {len(report.altered)} repaired, "
        f"{len(report.unrepaired)} need attention {list(report.unrepaired) or ''}")


def _point_webhooks_at(simulator_url: str, airflow_url: str) -> None:
    import httpx

    hooks = {api: {"url": f"{airflow_url}{WEBHOOK_PATH}/{api}", "secrets": [demo_webhook_secret(api)]}
             for api in demo_apis()}
    # Salesforce pushes Outbound Messages (SOAP) to their own receiver path, its secret as the last segment
    outbound = {"url": f"{airflow_url}{WEBHOOK_PATH}/salesforce/outbound-messages/{DEMO_OUTBOUND_SECRET}"}
    httpx.post(f"{simulator_url}/_admin/config", json={"webhooks": hooks, "mutation_rate_per_s": 1.0,
                                                       "salesforce_outbound": outbound}, timeout=10)
    say(f"simulator webhooks -> {airflow_url}{WEBHOOK_PATH}/<api>, mutating 1 object/s")


def _banner(airflow: AirflowStandalone) -> None:
    say(f"Airflow UI: {airflow.url}  login: {ADMIN_USER} / {airflow.password()}")


def _run_backfills(airflow: AirflowStandalone, bootstrap: str) -> None:
    from apisync_airflow import rest
    from apisync_airflow.pools import ensure_pools

    backfills = [f"{api}_backfill" for api in demo_apis()]
    with airflow.client() as api:
        say(f"pools: {', '.join(ensure_pools(api))}")
        try:
            rest.wait_for_dags(api, [*backfills, "kafka_topics"], timeout=240)
        except rest.AirflowRestError as exc:
            say(f"missing: {exc}; the stack is up without pipelines")
            return
        for dag_id in _dags_to_unpause(demo_apis()):
            rest.unpause(api, dag_id)
        runs = {dag_id: rest.trigger(api, dag_id) for dag_id in backfills}
        say(f"triggered {', '.join(backfills)}; waiting for them to finish")
        _wait_for_runs(api, runs)
    _print_topic_counts(bootstrap)


def _dags_to_unpause(apis) -> list[str]:
    """Every apisync DAG."""
    kinds = ["backfill", "incremental", "normalize", "reconcile", "audit"]
    return ["kafka_topics", *(f"{api}_{kind}" for api in apis for kind in kinds)]


def _wait_for_runs(api, runs: dict[str, str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(runs)
    while pending and time.monotonic() < deadline:
        for dag_id, run_id in list(pending.items()):
            state = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json().get("state")
            if state in ("success", "failed"):
                say(f"{dag_id}: {state}")
                pending.pop(dag_id)
        time.sleep(5)
    for dag_id in pending:
        say(f"{dag_id}: still running after {timeout:.0f}s; see the Airflow UI")


def _print_topic_counts(bootstrap: str) -> None:
    from devstack.topics import message_counts

    # The primary topics only (`<api>.<kind>`); the per-collection secondary topics mirror them.
    for topic, count in message_counts(bootstrap).items():
        if topic.count(".") == 1:
            say(f"  {topic:<28} {count:>8} messages")
