"""HubSpot CRM as it really behaves (the simulator does each of these): the records topic, read to its end,
equals the simulator's truth; no event id twice; no version backwards.

- search answers at most 10,000 results per query: a backfill of more than 10,000 contacts, killed after
  some pages and resumed, still ends equal to the truth;
- search lags behind writes, stamps tie on one millisecond, deletes are archives search never shows:
  incremental runs with creates, updates and archives end equal to the truth;
- webhooks are batched, thin, shuffled and duplicated: through the receiver and the normalizer's re-fetch
  they end equal to the truth;
- a deal's stage changed without a webhook (a silent, stamped change) still fires `dealstage_changed`.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis
from sync_helpers import (
    duplicate_event_ids,
    history,
    namespaced_receiver,
    normalize_all_and_check,
    normalize_until_consumed,
    record_problems,
    settings_for,
    settled_read,
    truth,
    wait_until_webhooks_delivered,
)

from apisync.kafka.reader import read_topic
from apisync.registry import build_source
from apisync.sync import run_backfill, run_incremental

pytestmark = pytest.mark.integration
COLLECTIONS = ("contact", "company", "deal")
SECRET = "hubspot-client-secret-fidelity"


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=60) as client:
        yield client
        client.post("/_admin/config", json={"hubspot_search_lag_s": 1.0, "webhooks": {"hubspot": {"url": None}},
                                             "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})


def _settings(kafka_config, redis_url, simulator_url, **extra):
    # the search limit (5/s) is the account's binding budget, as in production
    return settings_for("hubspot", kafka_config, redis_url, simulator_url, rate=5, **extra)


def _normalize_and_check(kafka_config, redis_url, simulator_url, settings, collections=COLLECTIONS) -> dict:
    return normalize_all_and_check("hubspot", kafka_config, redis_url, settings, collections, simulator_url)


class _Killed(RuntimeError):
    """Stands for the worker dying between two pages."""


class _DiesAfter:
    """The real source, whose backfill dies after `pages` committed pages."""

    def __init__(self, source, pages: int) -> None:
        self._source, self._pages = source, pages

    def __getattr__(self, name):
        return getattr(self._source, name)

    def backfill(self, *args):
        for number, batch in enumerate(self._source.backfill(*args), 1):
            yield batch
            if number == self._pages:
                raise _Killed(f"killed after page {number}")


def test_a_backfill_past_the_search_cap_killed_and_resumed_equals_truth(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=21, objects=5)
    sim.post("/_admin/config", json={"hubspot_search_lag_s": 0.0}).raise_for_status()
    # 10,050 more contacts, created in a few milliseconds: one search query matches more than 10,000
    sim.post("/_admin/mutate", json={"api": "hubspot", "count": 10_050, "kinds": ["create"],
                                     "collection": "contact"}).raise_for_status()
    live = len(truth(simulator_url, "hubspot")["objects"]["contact"])
    assert live > 10_000
    settings = _settings(kafka_config, redis_url, simulator_url)
    source = build_source(settings.api)
    with pytest.raises(_Killed):
        run_backfill(settings, "contact", source=_DiesAfter(source, 30))  # 6,000 contacts in, then dead
    resumed = run_backfill(settings, "contact", source=source)
    assert resumed.pages < 30, f"the resumed run walked {resumed.pages} pages: it started over"
    assert len(settled_read(kafka_config, "hubspot.changes")) == live
    _normalize_and_check(kafka_config, redis_url, simulator_url, settings, ("contact",))


def test_incremental_with_creates_updates_and_archives_equals_truth(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=22, objects=40)
    # small pages: the mutations of one call share milliseconds, so whole pages tie and get swept by id
    settings = _settings(kafka_config, redis_url, simulator_url, page_size=10)
    for collection in COLLECTIONS:
        run_backfill(settings, collection)
    archived = 0
    for _ in range(2):
        done = sim.post("/_admin/mutate", json={"api": "hubspot", "count": 45}).json()["mutations"]
        archived += sum(m["kind"] == "delete" for m in done)
        time.sleep(1.2)  # longer than the search index lag (hubspot_search_lag_s, 1 s)
        for collection in COLLECTIONS:
            run_incremental(settings, collection)
    assert archived > 0
    _normalize_and_check(kafka_config, redis_url, simulator_url, settings)


@pytest.fixture()
def receiver(kafka_config):
    """The real receiver under uvicorn, writing to a fresh namespace."""
    with namespaced_receiver("hubspot", kafka_config, secrets={"hubspot": ("an-older-secret", SECRET)}) as (ns, base):
        yield ns, base


def test_webhooks_batched_thin_shuffled_duplicated_end_as_truth(
        sim, kafka_config, redis_url, simulator_url, receiver):
    ns, base = receiver
    sim.post("/_admin/reset", json={"seed": 23, "objects": 4}).raise_for_status()
    time.sleep(0.5)  # the dispatcher applies a reset's "drop pending" on its next loop
    sim.post("/_admin/config", json={"webhooks": {"hubspot": {"url": f"{base}/webhooks/hubspot", "secrets": [SECRET]}},
                                     "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.3}}).raise_for_status()
    touched = set()
    for _ in range(15):  # 3 changes per simulated second, several per object: real reordering
        for m in sim.post("/_admin/mutate", json={"api": "hubspot", "count": 3}).json()["mutations"]:
            touched.add(f"hubspot.{m['collection']}.{m['id']}")
        sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
    delivered = wait_until_webhooks_delivered(sim, "hubspot")["delivered"]
    stored = len(read_topic(kafka_config, f"{ns}hubspot.webhooks"))
    assert stored >= 45 > delivered, "events were not batched"
    settings = _settings(kafka_config, redis_url, simulator_url)
    ledger = f"test:ledger:{uuid.uuid4().hex}"
    assert normalize_until_consumed("hubspot", kafka_config, redis.Redis.from_url(redis_url), stored,
                                    settings=settings, namespace=ns, ledger_prefix=ledger) == stored
    records = history(kafka_config, f"{ns}hubspot.records")
    assert set(records) == touched
    ground = truth(simulator_url, "hubspot")
    for key, past in records.items():
        _api, collection, ident = key.split(".", 2)
        if ident in ground["deleted"][collection]:
            assert past[-1][0] is None, f"{key} is archived upstream but not tombstoned"
        else:
            expected = ground["objects"][collection][ident]
            assert (past[-1][0]["version"], past[-1][0]["data"]) == (expected["version"], expected["data"]), key
    assert record_problems("hubspot", (), records, ground) == []  # versions never backwards
    assert duplicate_event_ids(history(kafka_config, f"{ns}hubspot.events")) == []


def test_a_silent_deal_stage_change_fires_dealstage_changed(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=24, objects=30)
    settings = _settings(kafka_config, redis_url, simulator_url)
    run_backfill(settings, "deal")
    before = truth(simulator_url, "hubspot")["objects"]["deal"]
    open_deals = [oid for oid, entry in before.items()
                  if entry["data"]["properties"]["dealstage"] not in ("closedwon", "closedlost")]
    # no webhook, but hs_lastmodifieddate moves (stamp): polling sees it, and so must the rules
    sim.post("/_admin/silent", json={"api": "hubspot", "collection": "deal", "kind": "update", "ids": open_deals,
                                     "stamp": True}).raise_for_status()
    after = truth(simulator_url, "hubspot")["objects"]["deal"]
    moved = {f"hubspot.deal.{oid}" for oid in open_deals
             if after[oid]["data"]["properties"]["dealstage"] != before[oid]["data"]["properties"]["dealstage"]}
    assert moved
    time.sleep(1.2)  # the search index lag
    run_incremental(settings, "deal")
    events = _normalize_and_check(kafka_config, redis_url, simulator_url, settings, ("deal",))
    fired = {key for key, past in events.items() for value, _v, _p in past if value["type"] == "dealstage_changed"}
    assert fired == moved
