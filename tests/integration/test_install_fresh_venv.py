"""apisync as a user installs it: the wheel into a fresh virtual environment, Airflow from the registry.

Nothing from this repository is on that environment's path: the wheel is built from a copy of the
package sources, the Airflow it runs loads apisync from site-packages (provider entry point, plugin,
hooks), the dags folder holds only the three-line file users add, and the plugins folder is empty. The
documented `apisync airflow setup` prepares it; a backfill and the normalizer then put the simulator's
truth into Kafka. Slow (pip installs Airflow, reusing pip's cache): `make test-install`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sync_helpers import live_mismatches, settled_read, truth, wait_for

from apisync._version import __version__
from apisync.kafka.admin import admin_client, ensure
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import declared_topics
from apisync_airflow import rest
from devstack.airflow import SIMULATOR_SALESFORCE_APP, SIMULATOR_TOKENS, AirflowStandalone, connection_env
from webhook_signing import sign_github

pytestmark = [pytest.mark.install, pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ('"""apisync: every registered API\'s DAGs and kafka_topics."""\n'
            "from apisync_airflow.factory import all_dags\n"
            "globals().update(all_dags())\n")
PIP_TIMEOUT_S = 1200


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300, check: bool = True,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A command's outcome with its output (in the assertion message when it fails)."""
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert not check or done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def package_sources(into: Path) -> Path:
    """Only what the wheel is built from: pyproject.toml, README.md, include/apisync, plugins/apisync_airflow."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("include/apisync", "plugins/apisync_airflow"):
        shutil.copytree(ROOT / part, into / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, into / name)
    return into


def constraints_file(into: Path) -> Path:
    """requirements.txt as a pip constraints file (constraints take no extras)."""
    lines = [re.sub(r"\[[^]]*\]", "", line) for line in (ROOT / "requirements.txt").read_text().splitlines()]
    into.write_text("\n".join(lines) + "\n")
    return into


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without anything that points into this repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("AIRFLOW")}
    return {**env, **extra}


class FreshVenvAirflow(AirflowStandalone):
    """`airflow standalone` of the fresh environment: its own bin on PATH, no PYTHONPATH, an empty plugins folder."""

    def __init__(self, state: Path, extra_env: dict[str, str], venv: Path, dags_folder: Path) -> None:
        super().__init__(state, extra_env, dags_folder=dags_folder)
        self.venv = venv

    def env(self) -> dict[str, str]:
        env = super().env()
        env.pop("PYTHONPATH")
        plugins = self.home / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        return {**env, "PATH": f"{self.venv / 'bin'}{os.pathsep}{clean_env()['PATH']}",
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins), "VIRTUAL_ENV": str(self.venv)}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the built wheel and its [airflow] extra, at the tested pins."""
    work = tmp_path_factory.mktemp("install")
    wheels = work / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(package_sources(work / "src"))],
        timeout=PIP_TIMEOUT_S)
    wheel = next(wheels.glob("apisync-*.whl"))
    shipped = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in shipped if n.startswith(("api_simulator/", "devstack/", "tests/"))], "dev code shipped"
    assert "apisync/fence.lua" in shipped and "apisync/http/ratelimit.lua" in shipped
    target = work / "venv"
    run([sys.executable, "-m", "venv", str(target)], env=clean_env())
    run([str(target / "bin" / "pip"), "install", "-q", "-c", str(constraints_file(work / "constraints.txt")),
         f"{wheel}[airflow]"], env=clean_env(), timeout=PIP_TIMEOUT_S)
    return target


@pytest.fixture(scope="module")
def airflow(venv, tmp_path_factory, kafka_bootstrap, redis_url, simulator_url):
    """The fresh environment's Airflow: only the three-line DAG file, connections as a user would set them."""
    home = tmp_path_factory.mktemp("installed-airflow")
    dags = home / "dags"
    dags.mkdir()
    (dags / "apisync_dags.py").write_text(DAG_FILE)
    conns = connection_env(kafka_bootstrap, redis_url, simulator_url)
    # github_default is saved in the metadata database by a test, as the UI saves it: no variable may shadow it.
    del conns["AIRFLOW_CONN_GITHUB_DEFAULT"]
    # Stripe through apisync's own connection type, its options as the form stores them (strings).
    conns["AIRFLOW_CONN_STRIPE_DEFAULT"] = orjson.dumps({
        "conn_type": "apisync_stripe", "host": simulator_url, "password": SIMULATOR_TOKENS["stripe"],
        "extra": {"extra__apisync_stripe__page_size": "25", "settle_s": "1"}}).decode()
    env = {**conns, "APISYNC_RETRIES": "2", "APISYNC_RETRY_DELAY_S": "1", "APISYNC_MAX_RETRY_DELAY_S": "2",
           "APISYNC_NORMALIZE_SCHEDULE": "none", "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5"}
    server = FreshVenvAirflow(home, env, venv, dags)
    try:
        server.start(timeout=600)
        yield server
    finally:
        server.stop()


def missing_pool_reason(api, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Why the scheduler holds a task instance back, when the reason is a missing pool ('' otherwise)."""
    answer = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/dependencies")
    reasons = [d["reason"] for d in answer.json().get("dependencies", [])] if answer.status_code == 200 else []
    return " ".join(r for r in reasons if "non-existent pool" in r)


def test_the_wheel_installs_the_console_script_and_the_provider(venv, tmp_path):
    env = clean_env(AIRFLOW_HOME=str(tmp_path / "airflow"))
    assert run([str(venv / "bin" / "apisync"), "--version"], env=env).stdout.strip() == f"apisync {__version__}"
    where = run([str(venv / "bin" / "python"), "-c", "import apisync, apisync_airflow; "
                 "print(apisync.__file__); print(apisync_airflow.__file__)"], env=env, cwd=tmp_path).stdout
    assert all(line.startswith(str(venv)) for line in where.split()), where  # site-packages, not this repo
    providers = run([str(venv / "bin" / "airflow"), "providers", "list"], env=env, cwd=tmp_path).stdout
    assert re.search(rf"^apisync\s.*{re.escape(__version__)}", providers, re.M), providers


def test_setup_then_a_backfill_and_the_normalizer_deliver_the_truth(airflow, venv, clean_slate, kafka_bootstrap,
                                                                    simulator_url):
    clean_slate(seed=11, objects=30)
    with airflow.client() as api:
        rest.wait_for_dags(api, ["stripe_backfill", "stripe_normalize", "kafka_topics"], timeout=300)
        chosen = ["customer", "invoice"]
        rest.unpause(api, "stripe_backfill")
        run_id = rest.trigger(api, "stripe_backfill", {"collections": chosen})
        # Before setup a task of a missing pool says so in one line (the task's dependencies in the UI).
        reason = wait_for(lambda: missing_pool_reason(api, "stripe_backfill", run_id, "backfill", 0),
                          "the backfill task's missing-pool reason", 300)
        assert "'apisync_stripe'" in reason

        setup = run([str(venv / "bin" / "apisync"), "airflow", "setup", "--apis", "stripe"], env=airflow.env(),
                    cwd=airflow.home, check=False)
        lines = setup.stdout.splitlines()
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert "ok   pool apisync_stripe: 4 slots" in lines and "ok   pool apisync_stripe_normalizer: 1 slot" in lines
        assert any(line.startswith("ok   connection stripe_default: stripe: authenticated") for line in lines), lines
        assert any(line.startswith("ok   kafka topics") for line in lines), lines

        # the waiting run goes on once its pools exist
        assert rest.wait_for_run(api, "stripe_backfill", run_id, timeout=600) == "success", \
            rest.task_states(api, "stripe_backfill", run_id)
        rest.unpause(api, "stripe_normalize")
        run_id = rest.trigger(api, "stripe_normalize")
        assert rest.wait_for_run(api, "stripe_normalize", run_id, timeout=600) == "success"

    records = {}
    for msg in settled_read({"bootstrap.servers": kafka_bootstrap}, "stripe.records"):
        records[msg.key().decode()] = orjson.loads(msg.value()) if msg.value() is not None else None
    assert live_mismatches("stripe", chosen, records, truth(simulator_url, "stripe")) == []
    assert records, "nothing synced"


def probe(api: str, host: str = "", login: str = "", password: str = "", **extra: str) -> dict:
    """The body the UI's Test button posts for an unsaved `apisync_<api>` form (form fields as strings)."""
    return {"connection_id": f"{api}_probe", "conn_type": f"apisync_{api}", "host": host, "login": login,
            "password": password, "extra": orjson.dumps(extra).decode()}


def salesforce_jwt_key(simulator_url: str) -> str:
    """A fresh RS256 key whose public half the simulated connected app trusts (its certificate upload)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    httpx.post(f"{simulator_url}/_admin/config", json={"salesforce_jwt_public_key": public},
               timeout=10).raise_for_status()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def form_probes(simulator_url: str, jwt_key: str) -> dict[str, tuple[dict, dict]]:
    """Per case: (right credentials, the same form with one credential wrong), as a user fills the form."""
    app, tokens = SIMULATOR_SALESFORCE_APP, SIMULATOR_TOKENS
    salesforce = {"instance_url": simulator_url, "consumer_key": app["client_id"]}
    return {
        "stripe": (probe("stripe", simulator_url, password=tokens["stripe"], page_size="25"),
                   probe("stripe", simulator_url, password="sk_test_wrong")),
        "github": (probe("github", simulator_url, password=tokens["github"], repos="apisync/demo, apisync/tools"),
                   probe("github", simulator_url, password="ghp_wrong", repos="apisync/demo")),
        # the demo's grant: the refresh token starts a rotating chain (its newest link kept in Redis)
        "salesforce refresh token": (
            probe("salesforce", **salesforce, consumer_secret=app["client_secret"], refresh_token=app["refresh_token"]),
            probe("salesforce", **salesforce, consumer_secret="wrong", refresh_token=app["refresh_token"])),
        # the JWT-bearer grant signs the integration user's username: the form's login field
        "salesforce jwt bearer": (
            probe("salesforce", login=app["username"], **salesforce, private_key=jwt_key),
            probe("salesforce", login="someone.else@apisync.demo", **salesforce, private_key=jwt_key)),
        "hubspot": (probe("hubspot", simulator_url, password=tokens["hubspot"], lookback_s="30"),
                    probe("hubspot", simulator_url, password="pat-na1-wrong")),
    }


# What the one-line refusal names: the API's status, or Salesforce's OAuth error code.
REFUSALS = {"stripe": "401", "github": "401", "salesforce refresh token": "invalid_client",
            "salesforce jwt bearer": "invalid_grant", "hubspot": "401"}


def test_the_connection_form_and_test_button_come_from_the_installed_provider(airflow, clean_slate, simulator_url):
    clean_slate(seed=5, objects=10)  # a fresh refresh-token chain: the simulator's and Redis' both reset
    jwt_key = salesforce_jwt_key(simulator_url)
    try:
        with airflow.client() as api:
            # the UI's own route (under /ui): what the connection form is drawn from
            meta = {hook["connection_type"]: hook
                    for hook in api.get(f"{airflow.url}/ui/connections/hook_meta").json()}
            assert {f"apisync_{name}" for name in SIMULATOR_TOKENS} <= set(meta)
            stripe = meta["apisync_stripe"]
            assert {"api_version", "settle_s", "page_size", "rate_per_s"} <= {
                key.rsplit("__", 1)[-1] for key in stripe["extra_fields"]}, stripe
            assert "repos" in str(meta["apisync_github"]["extra_fields"])
            assert "consumer_secret" in str(meta["apisync_salesforce"]["extra_fields"])
            login = meta["apisync_salesforce"]["standard_fields"]["login"]
            assert not login["hidden"] and "JWT" in login["title"], login

            answers = {case: tuple(api.post("/connections/test", json=body).json() for body in bodies)
                       for case, bodies in form_probes(simulator_url, jwt_key).items()}
    finally:
        httpx.post(f"{simulator_url}/_admin/config", json={"salesforce_jwt_public_key": ""}, timeout=10)
    for case, (accepted, refused) in answers.items():
        assert accepted["status"] is True and "authenticated" in accepted["message"], (case, accepted)
        assert refused["status"] is False and REFUSALS[case] in refused["message"], (case, refused)
        assert "\n" not in refused["message"], (case, refused)


def test_a_webhook_secret_saved_in_the_ui_is_used_by_the_api_servers_receiver(airflow, kafka_bootstrap):
    """`github_default` only in the metadata database, saved through the REST API as the UI saves it: the
    receiver on the api-server finds its `webhook_secrets` (re-read every minute) and stores what is signed
    with it, and refuses what is not."""
    ensure(admin_client({"bootstrap.servers": kafka_bootstrap}), declared_topics(apis=["github"]))
    secret, delivery = f"saved-in-the-ui-{uuid.uuid4()}", str(uuid.uuid4())
    body = orjson.dumps({"action": "edited", "marker": delivery})
    with airflow.client() as api:
        saved = api.post("/connections", json={"connection_id": "github_default", "conn_type": "http",
                                               "extra": orjson.dumps({"webhook_secrets": [secret]}).decode()})
        assert saved.status_code == 201, saved.text

    def post(signed_with: str) -> httpx.Response:
        return httpx.post(f"{airflow.url}/apisync/webhooks/github", content=body, timeout=30, headers={
            "X-Hub-Signature-256": sign_github(signed_with, body), "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": delivery, "Content-Type": "application/json"})

    answer = wait_for(lambda: (a := post(secret)).status_code == 200 and a, "the saved secret accepted", 120, every_s=2)
    assert answer.json() == {"status": "stored"}
    assert post("not-the-saved-secret").status_code == 401
    stored = [m for m in read_topic({"bootstrap.servers": kafka_bootstrap}, "github.webhooks", timeout=60)
              if m.value() == body]
    assert len(stored) == 1 and dict(stored[0].headers())["x-github-delivery"] == delivery.encode()
