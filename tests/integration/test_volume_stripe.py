"""Stripe at volume, against the simulator over HTTP and the real Kafka: a burst of events several times the
event window's bound, and a 30-day gap re-list, each killed midway (SIGKILL at a named failpoint, in a real
`python -m apisync` process) and resumed. Both commit progress before their end, every checkpoint stays far
below Kafka's 1 MB message limit, and the records topic ends equal to the simulator's truth, content included.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sync_helpers import changes, normalize_all_and_check, settings_for, settle_stripe_events

from apisync.checkpoints import CheckpointStore
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import CHECKPOINTS_TOPIC
from apisync.sources.stripe_events import MAX_SEEN
from apisync.sync import run_backfill, run_incremental
from devstack.airflow import SIMULATOR_TOKENS

pytestmark = [pytest.mark.integration, pytest.mark.volume]
ROOT = Path(__file__).resolve().parents[2]
KEY = "stripe.incremental.customer"
MAX_CHECKPOINT_BYTES = 64_000
KILLED = -signal.SIGKILL
MONTH_S = 31 * 86400


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=60) as client:
        yield client


@pytest.fixture
def settings(kafka_config, redis_url, simulator_url):
    return settings_for("stripe", kafka_config, redis_url, simulator_url)


def test_a_burst_of_events_3x_the_window_bound_killed_midway_loses_nothing(
        clean_slate, sim, settings, kafka_config, redis_url, simulator_url):
    clean_slate(seed=51, objects=300)
    began = time.monotonic()
    run_backfill(settings, "customer")
    burst = 3 * MAX_SEEN + MAX_SEEN // 2
    # An import: thousands of changes within a few seconds, one settle window, mostly new customers (so the
    # normalizer has few same-second ties of one customer to re-fetch). The simulator's events surface up
    # to 3 s late, so the killed run reads while some are still missing.
    _mutate(sim, burst - 110, ["create"])
    _mutate(sim, 100, ["update"])
    _mutate(sim, 10, ["delete"])
    assert len(_poll_changes(kafka_config)) == 0

    _incremental_killed_after_its_first_commit(kafka_config, redis_url, simulator_url)
    committed = len(_poll_changes(kafka_config))
    print(f"\nburst of {burst} events: {committed} observations committed before the kill")
    assert 0 < committed < burst  # progress was committed inside the window, and the rest was not yet

    run_incremental(settings, "customer")  # the resumed run finishes the window
    settle_stripe_events(sim)
    run_incremental(settings, "customer")  # and the next one re-reads what surfaced late
    sizes = _checkpoint_sizes(kafka_config)
    print(f"{len(sizes)} incremental checkpoints, largest {max(sizes)} bytes ({time.monotonic() - began:.0f} s)")
    assert max(sizes) <= MAX_CHECKPOINT_BYTES
    normalize_all_and_check("stripe", kafka_config, redis_url, settings, ["customer"], simulator_url)


def test_a_gap_relist_killed_midway_resumes_from_its_checkpoint_and_loses_nothing(
        clean_slate, sim, settings, kafka_config, redis_url, simulator_url):
    clean_slate(seed=53, objects=2_500)
    run_backfill(settings, "customer")
    sim.post("/_admin/clock", json={"advance_s": MONTH_S}).raise_for_status()  # nobody polled for a month
    _mutate(sim, 40, ["create", "update", "delete"])  # changes inside the gap: the listing must show them
    settle_stripe_events(sim)

    _incremental_killed_after_its_first_commit(kafka_config, redis_url, simulator_url)
    checkpoint = CheckpointStore(kafka_config).load(KEY)
    listed = len(_poll_changes(kafka_config))
    print(f"\nre-list of 2,500 customers: {listed} committed before the kill; position "
          f"{checkpoint['cursor']['relist']['position']['after']}")
    assert checkpoint["cursor"]["relist"]["position"]["after"]  # the re-list's position, committed midway
    assert 0 < listed < 2_500

    _mutate(sim, 40, ["create", "update", "delete"])  # while the re-list waits: the event feed must bring them
    summary = run_incremental(settings, "customer")
    assert "re-list of the collection resumes" in summary.note
    settle_stripe_events(sim)
    run_incremental(settings, "customer")
    relisting = [c for c in _checkpoints(kafka_config) if "relist" in c["cursor"]]
    sizes = _checkpoint_sizes(kafka_config)
    print(f"{len(relisting)} checkpoints inside the re-list, largest of all {max(sizes)} bytes")
    assert relisting and max(sizes) <= MAX_CHECKPOINT_BYTES
    listed_twice = len(_poll_changes(kafka_config)) - len({m["key"] for m in _poll_changes(kafka_config)})
    assert listed_twice < 500  # the resume went on from the position, it did not start over
    normalize_all_and_check("stripe", kafka_config, redis_url, settings, ["customer"], simulator_url)


# ---- helpers ------------------------------------------------------------------------------------
def _mutate(sim: httpx.Client, count: int, kinds: list[str]) -> None:
    sim.post("/_admin/mutate", json={"api": "stripe", "collection": "customer", "count": count,
                                     "kinds": kinds}).raise_for_status()


def _incremental_killed_after_its_first_commit(kafka_config: dict, redis_url: str, simulator_url: str) -> None:
    """`python -m apisync sync incremental stripe customer`, SIGKILLed right after its first transaction."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT / 'plugins'}",
           "APISYNC_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"], "APISYNC_REDIS_URL": redis_url,
           "APISYNC_STRIPE_URL": simulator_url, "APISYNC_STRIPE_TOKEN": SIMULATOR_TOKENS["stripe"],
           "APISYNC_STRIPE_RATE": "200", "APISYNC_FAILPOINTS": "page.after_commit=kill@1"}
    done = subprocess.run([sys.executable, "-m", "apisync", "sync", "incremental", "stripe", "customer"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == KILLED, f"the run was not killed at its first commit: {done.stderr[-2000:]}"


def _poll_changes(kafka_config: dict) -> list[dict]:
    return [m for m in changes(kafka_config, "stripe") if m["source"] == "poll"]


def _checkpoints(kafka_config: dict) -> list[dict]:
    """Every checkpoint written for the incremental cursor, in order (the topic does not compact this soon)."""
    return [orjson.loads(m.value()) for m in read_topic(kafka_config, CHECKPOINTS_TOPIC, timeout=60)
            if m.key() == KEY.encode() and m.value() is not None]


def _checkpoint_sizes(kafka_config: dict) -> list[int]:
    return [len(orjson.dumps(value)) for value in _checkpoints(kafka_config)]
