"""The dev stack's Airflow loads what a deployment loads (include/, plugins/); only the Celery stack adds dev/."""

from __future__ import annotations

import os
from pathlib import Path

from devstack.airflow import AirflowStandalone
from devstack.airflow_celery import AirflowCeleryStack

DEV_PACKAGES = ("api_simulator", "devstack")


def _path_entries(env: dict[str, str]) -> list[Path]:
    return [Path(entry) for entry in env["PYTHONPATH"].split(os.pathsep) if entry]


def test_standalone_airflow_has_no_dev_code_on_its_path(tmp_path):
    entries = _path_entries(AirflowStandalone(tmp_path, {}).env())
    assert [entry for entry in entries for package in DEV_PACKAGES if (entry / package).exists()] == []


def test_celery_airflow_finds_its_hostname_callable(tmp_path):
    env = AirflowCeleryStack(tmp_path, {}, broker_url="redis://127.0.0.1:6379/1").env()
    module = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rsplit(".", 1)[0]
    relative = Path(*module.split(".")).with_suffix(".py")
    assert [entry for entry in _path_entries(env) if (entry / relative).is_file()]
