"""`airflow standalone` (LocalExecutor, SQLite) wired to the local Kafka, Redis and simulator."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import httpx

from api_simulator.config import APIS as SIMULATED_APIS
from api_simulator.config import Credentials
from devstack.paths import PROJECT_ROOT
from devstack.process import ManagedProcess, free_port, wait_until

ADMIN_USER = "admin"
# Demo-only signing secrets shared by the simulator and the receiver (real ones come from the provider);
# an API not named here gets `apisync-demo-<api>-secret` (demo_webhook_secret).
DEMO_WEBHOOK_SECRETS = {
    "stripe": "whsec_apisync_demo_stripe",
    "github": "apisync-demo-github-secret",
    "salesforce": "whsec_YXBpc3luYy1kZW1vLXNhbGVzZm9yY2Uta2V5LTMyYg==",
}
# The demo's Outbound Messaging path secret: the last segment of the endpoint URL the simulated org posts to.
DEMO_OUTBOUND_SECRET = "apisync-demo-outbound-path-secret"


# The simulator's default credentials, one per API it serves (api_simulator.config.Credentials).
SIMULATOR_TOKENS = {api: getattr(Credentials(), api) for api in SIMULATED_APIS}
# The simulator's Salesforce connected app and org (api_simulator/config.py, salesforce_oauth.py).
SIMULATOR_SALESFORCE_APP = {
    "client_id": "3MVG9apisync_demo_consumer_key", "client_secret": "apisync_demo_consumer_secret",
    "refresh_token": "5Aep861apisync_demo_refresh_token", "username": "integration@apisync.demo",
    "organization_id": "00D5g000004ApisAAA",
}


def demo_webhook_secret(api: str) -> str:
    """The demo's signing secret of one API (shared by the simulator and the receiver)."""
    return DEMO_WEBHOOK_SECRETS.get(api) or f"apisync-demo-{api}-secret"


def demo_apis() -> list[str]:
    """The registered APIs the simulator serves, in registration order: the demo syncs each."""
    import apisync.apis  # noqa: F401 - registers every API
    from apisync.registry import APIS

    return [api for api in APIS if api in SIMULATED_APIS]


def connection_env(kafka_bootstrap: str, redis_url: str, simulator_url: str) -> dict[str, str]:
    """Airflow connections as AIRFLOW_CONN_* variables (JSON form), pointing at the local services.

    Each has the connection type of its official provider (kafka, redis, http, github, salesforce), so the
    UI shows the provider's form; apisync's own options are JSON extras. Every registered API the simulator
    serves gets one: GitHub and Salesforce in their providers' shapes, any other an `http` connection.
    """
    redis_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    conns = {
        "kafka_default": {"conn_type": "kafka", "extra": {"bootstrap.servers": kafka_bootstrap}},
        "kafka_watch": {"conn_type": "kafka", "extra": watch_connection_extra(kafka_bootstrap)},
        "redis_default": {"conn_type": "redis", "host": "127.0.0.1", "port": redis_port, "extra": {"db": 0}},
    }
    shaped = {"github": github_connection, "salesforce": salesforce_connection}
    for api in demo_apis():
        conns[f"{api}_default"] = shaped.get(api, lambda url, api=api: http_connection(api, url))(simulator_url)
    return {f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in conns.items()}


def watch_connection_extra(kafka_bootstrap: str) -> dict:
    """The asset watchers' Kafka client config: their own group (never the normalizer's), committed data only
    (a run started on an uncommitted message could find nothing and stop), and new messages only on first start
    (the topics' history is the normalizer's business; announcing it would start a run per old message)."""
    return {"bootstrap.servers": kafka_bootstrap, "group.id": "apisync.asset-watchers",
            "isolation.level": "read_committed", "auto.offset.reset": "latest", "enable.auto.commit": False}


def http_connection(api: str, simulator_url: str) -> dict:
    """The HTTP provider's fields: host (here with its scheme) and password = the API's token; the budget
    is the API spec's default (`rate_per_s` unset)."""
    return {"conn_type": "http", "host": simulator_url, "password": SIMULATOR_TOKENS[api],
            "extra": {"webhook_secrets": [demo_webhook_secret(api)]}}


def github_connection(simulator_url: str) -> dict:
    """The GitHub provider's fields: password = token, host = the (Enterprise) API URL, here the simulator."""
    return {"conn_type": "github", "host": simulator_url, "password": SIMULATOR_TOKENS["github"],
            "extra": {"repos": ["apisync/demo", "apisync/tools"],  # the simulator serves both
                      "webhook_secrets": [demo_webhook_secret("github")], "rate_per_s": 20}}


def salesforce_connection(simulator_url: str) -> dict:
    """The official provider's connection shape, refresh-token flow: sessions expire, the demo keeps going."""
    return {"conn_type": "salesforce", "extra": {
        "instance_url": simulator_url, "consumer_key": SIMULATOR_SALESFORCE_APP["client_id"],
        "consumer_secret": SIMULATOR_SALESFORCE_APP["client_secret"],
        "refresh_token": SIMULATOR_SALESFORCE_APP["refresh_token"],
        "organization_id": SIMULATOR_SALESFORCE_APP["organization_id"],
        "webhook_secrets": [DEMO_WEBHOOK_SECRETS["salesforce"]], "rate_per_s": 20,
        "outbound_message_secrets": [DEMO_OUTBOUND_SECRET]}}


class AirflowStandalone:
    """One `airflow standalone` process group; its API server on `port`."""

    def __init__(self, state: Path, extra_env: dict[str, str], port: int | None = None,
                 dags_folder: Path = PROJECT_ROOT / "dags") -> None:
        self.home = state / "airflow"
        self.port = port or free_port()
        self.extra_env = extra_env
        self.dags_folder = dags_folder
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        venv_bin = str(Path(sys.executable).parent)
        return {
            **os.environ, **self.extra_env,
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "include"), str(PROJECT_ROOT / "plugins")]),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret(),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }

    def start(self, timeout: float = 300.0) -> AirflowStandalone:
        self.process = ManagedProcess("airflow", ["airflow", "standalone"], self.home / "standalone.log",
                                      env=self.env(), cwd=PROJECT_ROOT)
        wait_until(self.healthy, timeout, f"Airflow ({self.url})", self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=30)
            self.process = None

    def healthy(self) -> bool:
        """Every component in /api/v2/monitor/health reports healthy."""
        health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        return all(part.get("status") == "healthy" for part in health.values() if isinstance(part, dict))

    def password(self) -> str:
        """The admin password `airflow standalone` generated on first start."""
        generated = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        return generated[ADMIN_USER]

    def client(self) -> httpx.Client:
        """An authenticated REST API client (as the UI would be)."""
        token = httpx.post(f"{self.url}/auth/token", json={"username": ADMIN_USER, "password": self.password()},
                           timeout=10).json()["access_token"]
        return httpx.Client(base_url=f"{self.url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def _jwt_secret(self) -> str:
        # Every component must sign and check task tokens with one secret; keep it across restarts.
        path = self.home / "jwt_secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()
