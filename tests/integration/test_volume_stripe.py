"""Stripe at volume, against the simulator over HTTP and the real Kafka: a burst of events several times the
event window's bound, and a 30-day gap re-list of 100,000 customers, each killed midway (SIGKILL at a named
failpoint, in a real `python -m apisync` process) and resumed. Both commit progress before their end, every
checkpoint stays far below Kafka's 1 MB message limit, the re-list's process stays small (its peak RSS is
printed), and the records topic ends equal to the simulator's truth, content included.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from sync_helpers import changes, normalize_all_and_check, settings_for, settle_stripe_events

from apisync.apis.stripe.events import MAX_SEEN
from apisync.checkpoints import CheckpointStore
from apisync.kafka.reader import read_topic
from apisync.kafka.topics import CHECKPOINTS_TOPIC
from apisync.sync import run_backfill, run_incremental
from devstack.airflow import SIMULATOR_TOKENS

pytestmark = [pytest.mark.integration, pytest.mark.volume]
ROOT = Path(__file__).resolve().parents[2]
KEY = "stripe.incremental.customer"
MAX_CHECKPOINT_BYTES = 64_000
KILLED = -signal.SIGKILL
MONTH_S = 31 * 86400
RELISTED = 100_000  # customers the gap re-list walks: 1,000 pages, 100x the walk's bound of ids per second
KILLED_AT = 300  # the first run is SIGKILLed right after the commit holding its 300th page (of ~1,000)
LIVE_RATE = 100  # Stripe's live-mode read limit, requests/s (https://docs.stripe.com/rate-limits)
MAX_RELIST_RSS = 200 * 2**20  # the walk streams pages; holding the 100,000 customers would take ~150 MiB more


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=60) as client:
        yield client


@pytest.fixture
def live_mode_limit(sim):
    """The simulator answers like a live-mode account (100 requests/s) for one test, then like test mode again."""
    sim.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": LIVE_RATE}}}).raise_for_status()
    yield
    sim.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 25}}}).raise_for_status()


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


@pytest.mark.timeout(900)  # 4.5-5.5 minutes measured on 2 cores shared with a load average of 16-28
def test_a_gap_relist_of_100k_customers_killed_midway_resumes_from_its_checkpoint_and_loses_nothing(
        clean_slate, live_mode_limit, sim, settings, kafka_config, redis_url, simulator_url):
    clean_slate(seed=53, objects=400)
    run_backfill(settings, "customer")
    last_poll = int(sim.get("/_admin/clock").json()["now"])
    sim.post("/_admin/clock", json={"advance_s": MONTH_S}).raise_for_status()  # nobody polled for a month
    # An import early in the gap: 100,000 customers whose customer.created events have aged out since, so
    # only the re-list can bring them (the simulator seeds them as history: no event, no webhook).
    sim.post("/_admin/seed", json={"api": "stripe", "counts": {"customer": RELISTED},
                                   "created_from": last_poll + 1, "created_to": last_poll + 12 * 3600},
             timeout=300).raise_for_status()
    _mutate(sim, 40, ["create", "update", "delete"])  # changes inside the gap: the listing must show them
    settle_stripe_events(sim)

    began = time.monotonic()
    killed = _sync_incremental(kafka_config, redis_url, simulator_url, f"page.after_commit=kill@{KILLED_AT}", LIVE_RATE)
    assert killed.returncode == KILLED, f"the run was not killed after page {KILLED_AT}: {killed.log[-2000:]}"
    checkpoint = CheckpointStore(kafka_config).load(KEY)
    position = checkpoint["cursor"]["relist"]["position"]
    assert position["after"]  # the re-list's position, committed midway
    listed = len(_poll_changes(kafka_config))
    assert KILLED_AT * 90 < listed < RELISTED  # about 100 customers a page (deletes pages hold fewer)

    _mutate(sim, 40, ["create", "update", "delete"])  # while the re-list waits: the event feed must bring them
    resumed = _sync_incremental(kafka_config, redis_url, simulator_url, rate=LIVE_RATE)
    assert resumed.returncode == 0, resumed.log[-2000:]
    assert "re-list of the collection resumes" in resumed.log
    settle_stripe_events(sim)
    run_incremental(settings, "customer")
    checkpoints = _checkpoints(kafka_config)
    relisting = [c for c in checkpoints if "relist" in c["cursor"]]
    sizes = [len(orjson.dumps(c)) for c in checkpoints]
    polled = _poll_changes(kafka_config)
    listed_twice = len(polled) - len({m["key"] for m in polled})
    print(f"\nre-list of {RELISTED:,} customers: killed after page {KILLED_AT} ({listed:,} observations, position "
          f"{position['after']}), "
          f"resumed in {time.monotonic() - began:.0f} s; {len(polled):,} observations, {listed_twice} listed "
          f"twice; {len(relisting)} checkpoints inside the re-list, largest of all {max(sizes):,} bytes; peak RSS of "
          f"the resumed run (the rest of the re-list, then the events) {resumed.peak_rss / 2**20:.0f} MiB")
    assert len(relisting) >= 10  # 1,000 pages commit their position all along (a transaction holds several)
    assert max(sizes) <= MAX_CHECKPOINT_BYTES
    assert listed_twice < listed // 4  # the resume went on from the position, it did not start over
    assert resumed.peak_rss <= MAX_RELIST_RSS  # pages stream through: the re-list never holds the collection
    normalize_all_and_check("stripe", kafka_config, redis_url, settings, ["customer"], simulator_url)
    print(f"normalized and compared with the truth in {time.monotonic() - began:.0f} s since the kill")


# ---- helpers ------------------------------------------------------------------------------------
def _mutate(sim: httpx.Client, count: int, kinds: list[str]) -> None:
    sim.post("/_admin/mutate", json={"api": "stripe", "collection": "customer", "count": count,
                                     "kinds": kinds}).raise_for_status()


def _incremental_killed_after_its_first_commit(kafka_config: dict, redis_url: str, simulator_url: str) -> None:
    """`python -m apisync sync incremental stripe customer`, SIGKILLed right after its first transaction."""
    done = _sync_incremental(kafka_config, redis_url, simulator_url, failpoints="page.after_commit=kill@1")
    assert done.returncode == KILLED, f"the run was not killed at its first commit: {done.log[-2000:]}"


# `python -m apisync ...` that prints its peak RSS (VmHWM) as it exits. Not wait4's ru_maxrss: a child's starts
# at its parent's RSS (the pytest process), VmHWM belongs to the program after exec.
PEAK_RSS_AT_EXIT = """
import atexit, runpy, sys
def report():
    with open('/proc/self/status') as status:
        peak = next(line for line in status if line.startswith('VmHWM:'))
    print('peak-rss-kib', peak.split()[1], file=sys.stderr, flush=True)
atexit.register(report)
sys.argv[0] = 'apisync'
runpy.run_module('apisync', run_name='__main__', alter_sys=True)
"""


@dataclass(frozen=True, slots=True)
class Finished:
    """How a sync process ended: its exit code (negative: the signal), its log, its peak resident memory."""

    returncode: int
    log: str
    peak_rss: int


def _sync_incremental(kafka_config: dict, redis_url: str, simulator_url: str, failpoints: str = "",
                      rate: int = 200) -> Finished:
    """`python -m apisync sync incremental stripe customer` in its own process, with its peak RSS."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'include'}{os.pathsep}{ROOT / 'plugins'}",
           "APISYNC_KAFKA_BOOTSTRAP": kafka_config["bootstrap.servers"], "APISYNC_REDIS_URL": redis_url,
           "APISYNC_STRIPE_URL": simulator_url, "APISYNC_STRIPE_TOKEN": SIMULATOR_TOKENS["stripe"],
           "APISYNC_STRIPE_RATE": str(rate), "APISYNC_FAILPOINTS": failpoints}
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_AT_EXIT, "sync", "incremental", "stripe", "customer"],
                          env=env, capture_output=True, text=True, timeout=600)
    peak = re.search(r"^peak-rss-kib (\d+)$", done.stderr, re.MULTILINE)
    return Finished(done.returncode, done.stdout + done.stderr, int(peak.group(1)) * 1024 if peak else 0)


def _poll_changes(kafka_config: dict) -> list[dict]:
    return [m for m in changes(kafka_config, "stripe") if m["source"] == "poll"]


def _checkpoints(kafka_config: dict) -> list[dict]:
    """Every checkpoint written for the incremental cursor, in order (the topic does not compact this soon)."""
    return [orjson.loads(m.value()) for m in read_topic(kafka_config, CHECKPOINTS_TOPIC, timeout=60)
            if m.key() == KEY.encode() and m.value() is not None]


def _checkpoint_sizes(kafka_config: dict) -> list[int]:
    return [len(orjson.dumps(value)) for value in _checkpoints(kafka_config)]
