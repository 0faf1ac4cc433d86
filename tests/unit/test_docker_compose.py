"""docker-compose.yaml is for users (no Docker engine here): validate it against the Compose spec."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The Compose specification's JSON schema as shipped inside the docker-compose 1.29.2 wheel on PyPI.
SCHEMA_WHEEL = "docker-compose==1.29.2"
SCHEMA_MEMBER = "compose/config/compose_spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    cached = ROOT / ".cache" / "compose_spec.json"
    if not cached.exists():
        download = cached.parent / "compose-wheel"
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(download),
                        SCHEMA_WHEEL], check=True)
        wheel = next(download.glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            cached.write_bytes(archive.read(SCHEMA_MEMBER))
    return json.loads(cached.read_text())


def test_compose_file_follows_the_compose_specification(compose, compose_schema):
    jsonschema.validate(compose, compose_schema)


def test_schema_rejects_a_broken_file(compose, compose_schema):
    # Guard against a schema that accepts anything.
    broken = {**compose, "services": {**compose["services"], "redis": {"image": 7}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema)


def _bind_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith("."):
            sources.append(source)
    return sources


def test_every_mounted_path_and_dockerfile_exists(compose):
    missing = []
    for name, service in compose["services"].items():
        for source in _bind_sources(service):
            if not (ROOT / source).exists():
                missing.append(f"{name}: {source}")
        build = service.get("build")
        if build and not (ROOT / build["context"] / build["dockerfile"]).exists():
            missing.append(f"{name}: {build['dockerfile']}")
    assert missing == []


def test_stack_has_the_promised_services(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "kafka-1", "kafka-ui", "api-simulator", "airflow-init",
                 "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker"):
        assert name in services, name
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert "/opt/airflow/include" in worker_env["PYTHONPATH"].split(":")
    assert services["kafka-1"]["image"].startswith("apache/kafka:")


# Aligned with Airflow's official docker-compose.yaml (airflow-core/docs/howto/docker-compose).
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker")


def _one_shot(compose: dict) -> set[str]:
    """Services others wait on to *complete* (airflow-init): no healthcheck, no restart."""
    return {name for service in compose["services"].values()
            for name, cond in (service.get("depends_on") or {}).items()
            if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully"}


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy(compose):
    one_shot = _one_shot(compose)
    assert one_shot == {"airflow-init", "airflow-pools", "kafka-topics"}
    problems = []
    for name, service in compose["services"].items():
        if name in one_shot:
            if service.get("restart", "no") != "no":
                problems.append(f"{name}: a one-shot service must not restart")
            continue
        test = (service.get("healthcheck") or {}).get("test")
        if not test or service["healthcheck"].get("disable"):
            problems.append(f"{name}: no healthcheck")
        if service.get("restart") not in ("always", "unless-stopped"):
            problems.append(f"{name}: restart={service.get('restart')!r}")
    assert problems == []


def test_airflow_services_run_as_the_official_user_with_logs_and_config_mounted(compose):
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        service = compose["services"][name]
        assert service["user"] == "${AIRFLOW_UID:-50000}:0", name
        targets = {volume.split(":")[1] for volume in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/logs", "/opt/airflow/config", "/opt/airflow/plugins",
                "/opt/airflow/include"} <= targets, name
        assert service["environment"]["AIRFLOW_CONFIG"] == "/opt/airflow/config/airflow.cfg"


def test_airflow_services_start_in_the_official_order(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
        for backing in ("postgres", "redis", "kafka-1"):
            assert depends[backing] == {"condition": "service_healthy"}, (name, backing)
    # Tasks call the api-server's execution API from their first second: workers wait until it is healthy.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    # The scheduler's healthcheck asks its health server, which must be switched on.
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "8974/health" in " ".join(services["airflow-scheduler"]["healthcheck"]["test"])


@pytest.mark.parametrize("service, needle", [
    ("airflow-worker", "inspect ping"),
    ("airflow-dag-processor", "--job-type DagProcessorJob"),
    ("airflow-triggerer", "--job-type TriggererJob"),
    ("airflow-apiserver", "/api/v2/version"),
])
def test_airflow_healthchecks_probe_the_component_itself(compose, service, needle):
    assert needle in " ".join(compose["services"][service]["healthcheck"]["test"])


def _redis_url_of_the_airflow_connection(env: dict) -> str:
    conn = json.loads(env["AIRFLOW_CONN_REDIS_DEFAULT"])
    return f"redis://{conn['host']}:{conn['port']}/{conn['extra']['db']}"


def test_one_follow_normalizer_service_per_api(compose):
    from apisync.registry import APIS

    services = compose["services"]
    airflow_env = services["airflow-scheduler"]["environment"]
    kafka = json.loads(airflow_env["AIRFLOW_CONN_KAFKA_DEFAULT"])["extra"]["bootstrap.servers"]
    for api in APIS:
        service = services[f"normalizer-{api}"]
        assert service["entrypoint"] == ["python", "-m", "apisync", "normalize"]
        assert service["command"][:2] == [api, "--follow"]
        # never the Airflow task's static member and transactional.id ("0"): a manual DAG run only shares work
        assert service["command"][service["command"].index("--instance") + 1] != "0"
        assert service["profiles"] == ["follow"]
        assert service["stop_signal"] == "SIGTERM" and service["stop_grace_period"] == "60s"
        assert service["restart"] == "unless-stopped"
        env = service["environment"]
        # the same Kafka and the same Redis ledger as the Airflow tasks, or two fences would disagree
        assert env["APISYNC_KAFKA_BOOTSTRAP"] == kafka
        assert env["APISYNC_REDIS_URL"] == _redis_url_of_the_airflow_connection(airflow_env)
        assert env[f"APISYNC_{api.upper()}_URL"] and env[f"APISYNC_{api.upper()}_TOKEN"]
        assert service["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
    assert services["kafka-topics"]["entrypoint"][-2:] == ["topics", "ensure"]


def test_airflow_watches_input_topics_with_its_own_consumer_group(compose):
    env = compose["services"]["airflow-triggerer"]["environment"]
    assert env["APISYNC_NORMALIZE_SCHEDULE"] == "${APISYNC_NORMALIZE_SCHEDULE:-assets}"
    watch = json.loads(env["AIRFLOW_CONN_KAFKA_WATCH"])
    assert watch["conn_type"] == "kafka"
    assert not watch["extra"]["group.id"].startswith("apisync.normalizer")  # those are apisync.normalizer.<api>
    assert watch["extra"]["isolation.level"] == "read_committed"
