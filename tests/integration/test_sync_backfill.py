"""Backfill of every API into `<api>.changes` against the real broker, Redis and the simulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sync_helpers import changes, live_mismatches, newest_per_key, settings_for, truth

from apisync.checkpoints import CheckpointStore
from apisync.registry import COLLECTIONS as REGISTERED_COLLECTIONS
from apisync.sync import BackfillNotDone, run_backfill, run_incremental
from devstack.airflow import SIMULATED_APIS

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Every registered API the simulator serves, with the collections its spec declares: a new API joins here.
COLLECTIONS = {api: REGISTERED_COLLECTIONS[api] for api in SIMULATED_APIS}


@pytest.mark.parametrize("api", COLLECTIONS)
def test_backfill_delivers_the_ground_truth(api, clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=11, objects=150)
    settings = settings_for(api, kafka_config, redis_url, simulator_url)
    for collection in COLLECTIONS[api]:
        summary = run_backfill(settings, collection)
        assert summary.pages >= 1
    observed = changes(kafka_config, api)
    ground = truth(simulator_url, api)
    assert live_mismatches(api, COLLECTIONS[api], newest_per_key(observed), ground) == []
    for obs in observed:
        assert obs["key"] == f"{api}.{obs['collection']}.{obs['id']}"
        assert obs["source"] == "backfill"
    # A finished backfill is not repeated by a second trigger.
    again = run_backfill(settings, COLLECTIONS[api][0])
    assert again.records == 0 and "already complete" in again.note


def test_incremental_refuses_to_start_before_the_backfill(clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate()
    with pytest.raises(BackfillNotDone, match="backfill has not finished"):
        run_incremental(settings_for("stripe", kafka_config, redis_url, simulator_url), "customer")


def test_backfill_killed_halfway_resumes_from_its_checkpoint(clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=5, objects=450)  # 5 pages of 100 customers
    # Every page takes 3 s, so the kill lands mid-run: once two pages are committed, the last two pages
    # still need at least 6 s, far more than noticing the checkpoint and sending SIGKILL takes.
    httpx.post(f"{simulator_url}/_admin/faults",
               json={"kind": "slow", "api": "stripe", "path_prefix": "/v1/customers", "count": None, "delay_s": 3.0})
    store = CheckpointStore(kafka_config)
    first = _start_backfill_process(kafka_config, redis_url, simulator_url)
    try:
        _wait_for(lambda: (store.load("stripe.backfill.customer") or {}).get("pages", 0) >= 2, 180)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    interrupted = store.load("stripe.backfill.customer")
    assert interrupted and not interrupted["done"]
    httpx.delete(f"{simulator_url}/_admin/faults")

    second = _start_backfill_process(kafka_config, redis_url, simulator_url)
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, out
    final = store.load("stripe.backfill.customer")
    assert final["done"] and final["pages"] == 5  # continued the page count, did not start over
    observed = [o for o in changes(kafka_config, "stripe") if o["collection"] == "customer"]
    ground = truth(simulator_url, "stripe")
    assert live_mismatches("stripe", ["customer"], newest_per_key(observed), ground) == []
    # Resumed, not restarted: each customer was delivered once (the killed page was never committed).
    assert len(observed) == len(ground["objects"]["customer"])


def _start_backfill_process(kafka_config, redis_url, simulator_url) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}",
           "APISYNC_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"],
           "APISYNC_REDIS_URL": redis_url, "APISYNC_STRIPE_URL": simulator_url,
           "APISYNC_STRIPE_TOKEN": "sk_test_apisync", "APISYNC_STRIPE_RATE": "100"}
    return subprocess.Popen([sys.executable, "-m", "apisync", "sync", "backfill", "stripe", "customer"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"condition not met within {timeout}s")
