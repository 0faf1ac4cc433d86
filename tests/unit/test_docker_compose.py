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
