"""Airflow scaled out without Docker: CeleryExecutor, PostgreSQL metadata DB, Redis as Celery's broker.

The same components as the official docker-compose file, as local processes, each in its own process
group: api-server, scheduler, dag-processor, triggerer and N `airflow celery worker`s. Every worker
reports its own hostname (`apisync-worker-<n>`) in the task instances, so a test can tell which
worker ran what.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from devstack.airflow import AirflowStandalone
from devstack.errors import StackError
from devstack.paths import DEV_ROOT, PROJECT_ROOT
from devstack.postgres import PostgresServer
from devstack.process import ManagedProcess, free_port

WORKER_NAME_ENV = "APISYNC_WORKER_NAME"
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def worker_hostname() -> str:
    """`[core] hostname_callable` of the stack: the worker's name, else the machine's."""
    import socket

    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


class AirflowCeleryStack(AirflowStandalone):
    """api-server, scheduler, dag-processor, triggerer and `workers` Celery workers on one PostgreSQL."""

    def __init__(self, state: Path, extra_env: dict[str, str], *, broker_url: str, workers: int = 2,
                 concurrency: int = 2, port: int | None = None, dags_folder: Path = PROJECT_ROOT / "dags") -> None:
        super().__init__(state, extra_env, port=port, dags_folder=dags_folder)
        self.broker_url = broker_url
        self.workers, self.concurrency = workers, concurrency
        self.postgres = PostgresServer(state / "postgres")
        self.processes: dict[str, ManagedProcess] = {}

    def env(self) -> dict[str, str]:
        db = self.postgres.sqlalchemy_url
        env = super().env()
        return {
            **env,
            # The hostname callable below lives in devstack: dev/ joins the path of this stack only.
            "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(DEV_ROOT)]),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.workers * self.concurrency * 2),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.airflow_celery.worker_hostname",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,  # the driver named: SQLAlchemy 2.1 defaults to psycopg 3
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            "AIRFLOW__API__WORKERS": "1",
            # On 2 busy cores one api-server process can take longer than the default 5 s to answer a
            # task's start call; a timeout there fails the try before the task ran.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        }

    def start(self, timeout: float = 400.0) -> AirflowCeleryStack:
        self.postgres.start()
        env = self.env()
        self._migrate(env, timeout)
        for service in SERVICES:
            argv = ["airflow", service] + (["--port", str(self.port)] if service == "api-server" else [])
            self._spawn(service, argv, env)
        for n in range(1, self.workers + 1):
            name = f"apisync-worker-{n}"
            worker_env = {**env, WORKER_NAME_ENV: name,
                          "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            self._spawn(name, ["airflow", "celery", "worker", "--celery-hostname", f"{name}@%h",
                               "--concurrency", str(self.concurrency)], worker_env)
        deadline = time.monotonic() + timeout
        while not self._all_up():
            if time.monotonic() > deadline:
                raise StackError(f"Airflow with CeleryExecutor ({self.url}) not ready within {timeout:.0f}s; "
                                 f"see the logs in {self.home}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        # Workers first (no new task starts), then the services, then the database under them.
        for name in sorted(self.processes, key=lambda n: not n.startswith("apisync-worker")):
            self.processes.pop(name).stop(grace=30)
        self.postgres.stop()

    def worker_names(self) -> list[str]:
        return [f"apisync-worker-{n}" for n in range(1, self.workers + 1)]

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.processes[name] = ManagedProcess(name, argv, self.home / f"{name}.log", env=env, cwd=PROJECT_ROOT)

    def _migrate(self, env: dict[str, str], timeout: float) -> None:
        log = self.home / "db-migrate.log"
        with open(log, "ab") as out:
            result = subprocess.run(["airflow", "db", "migrate"], env=env, cwd=PROJECT_ROOT, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {result.returncode}); see {log}")

    def _all_up(self) -> bool:
        """Every component healthy and both workers connected; a process that died fails at once."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"{name} exited with code {process.poll()}; see {process.log_path}")
        workers_ready = all(" ready." in (self.home / f"{name}.log").read_text(errors="replace")
                            for name in self.worker_names())
        try:
            return workers_ready and self.healthy() and \
                (self.home / "simple_auth_manager_passwords.json.generated").exists()
        except (httpx.HTTPError, ValueError):
            return False
