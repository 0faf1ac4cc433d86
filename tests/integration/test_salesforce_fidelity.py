"""Salesforce as it really behaves (the simulator does each of these): the records topic, read to its
end, equals the simulator's truth; no event id twice; no version backwards.

- access tokens expire (session timeout → 401 INVALID_SESSION_ID): a run outlives several tokens,
  with each OAuth flow (refresh token, client credentials, JWT bearer);
- a long transaction commits its row 5 minutes after its SystemModstamp;
- Outbound Messaging (SOAP, batched, duplicated, shuffled) ends as records equal to truth;
- a forged (foreign organisation) or malformed SOAP message is refused and nothing is produced;
- an Outbound Message posted without the endpoint URL's path secret is refused, the org's own is stored;
- a forged notification stamped far in the future never freezes its record: it is re-fetched, and the
  real update after it lands.
"""

from __future__ import annotations

import dataclasses
import time
import uuid

import httpx
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sync_helpers import (
    duplicate_event_ids,
    history,
    namespaced_receiver,
    normalize_all_and_check,
    normalize_until_consumed,
    record_problems,
    settings_for,
    truth,
    wait_until_webhooks_delivered,
)

from api_simulator import salesforce_outbound
from api_simulator.salesforce_model import FIELDS
from apisync.kafka.reader import read_topic
from apisync.settings import OAuthSettings
from apisync.sync import run_backfill, run_incremental
from devstack.airflow import SIMULATOR_SALESFORCE_APP as APP

pytestmark = pytest.mark.integration
COLLECTIONS = ("account", "contact", "opportunity")
ORG = APP["organization_id"]
PATH_SECRET = "c2ltdWxhdGVkLW9yZy1lbmRwb2ludA"
OM_PATH = f"/webhooks/salesforce/outbound-messages/{PATH_SECRET}"


@pytest.fixture
def sim(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=30) as client:
        yield client
        # the simulator keeps config across resets: leave the Salesforce parts as found
        client.post("/_admin/config", json={
            "salesforce_session_lifetime_s": 7200, "salesforce_jwt_public_key": "",
            "salesforce_late_commits": {"share": 0.0, "lag_s": 300}, "salesforce_outbound": {"url": None},
            "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0}})


def _oauth(flow: str, simulator_url: str, private_key: str = "") -> OAuthSettings:
    return OAuthSettings(flow=flow, token_url=f"{simulator_url}/services/oauth2/token", client_id=APP["client_id"],
                         client_secret=APP["client_secret"] if flow != "jwt_bearer" else "",
                         refresh_token=APP["refresh_token"] if flow == "refresh_token" else "",
                         private_key=private_key, username=APP["username"], audience="https://login.salesforce.com")


def _settings(kafka_config, redis_url, simulator_url, oauth, **extra):
    """settings_for with OAuth instead of the static token."""
    base = settings_for("salesforce", kafka_config, redis_url, simulator_url, **extra)
    return dataclasses.replace(base, api=dataclasses.replace(base.api, token="", oauth=oauth))


def _jwt_key(sim) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    sim.post("/_admin/config", json={"salesforce_jwt_public_key": public}).raise_for_status()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _sync_all(settings, job) -> None:
    for collection in COLLECTIONS:
        job(settings, collection)


def _normalize_and_check(kafka_config, redis_url, simulator_url, settings) -> None:
    normalize_all_and_check("salesforce", kafka_config, redis_url, settings, COLLECTIONS, simulator_url)


# The three grants differ only at the token endpoint (tests/unit/http/test_oauth.py covers each); the
# refresh-token run stays in `make test`, the other two run with the fault suite to keep it under 20 min.
@pytest.mark.parametrize("flow", ["refresh_token", pytest.param("client_credentials", marks=pytest.mark.faults),
                                  pytest.param("jwt_bearer", marks=pytest.mark.faults)])
def test_a_run_that_outlives_its_access_token_keeps_going(
        clean_slate, sim, kafka_config, redis_url, simulator_url, flow):
    clean_slate(seed=11, objects=150)
    key = _jwt_key(sim) if flow == "jwt_bearer" else ""
    sim.post("/_admin/config", json={"salesforce_session_lifetime_s": 1}).raise_for_status()  # 1 s sessions
    settings = _settings(kafka_config, redis_url, simulator_url, _oauth(flow, simulator_url, key), page_size=20)
    granted = sim.get("/_admin/salesforce/sessions").json()["granted"]
    # slow pages: the backfill spans many session lifetimes
    sim.post("/_admin/faults", json={"kind": "slow", "api": "salesforce", "delay_s": 0.15, "count": None})
    try:
        _sync_all(settings, run_backfill)
    finally:
        sim.delete("/_admin/faults")
    sim.post("/_admin/mutate", json={"api": "salesforce", "count": 20}).raise_for_status()
    sim.post("/_admin/salesforce/sessions/expire").raise_for_status()  # an admin ends every session
    _sync_all(settings, run_incremental)
    renewed = sim.get("/_admin/salesforce/sessions").json()["granted"] - granted
    assert renewed >= 3, f"only {renewed} tokens issued: the run never outlived a token"
    _normalize_and_check(kafka_config, redis_url, simulator_url, settings)


def test_a_transaction_committed_five_minutes_late_is_not_lost(
        clean_slate, sim, kafka_config, redis_url, simulator_url):
    clean_slate(seed=12, objects=40)
    settings = settings_for("salesforce", kafka_config, redis_url, simulator_url)
    _sync_all(settings, run_backfill)
    # one update runs in a 5-minute transaction: stamped now, visible to queries only at commit
    sim.post("/_admin/config", json={"salesforce_late_commits": {"share": 1.0, "lag_s": 300}}).raise_for_status()
    late = sim.post("/_admin/mutate", json={"api": "salesforce", "count": 1, "kinds": ["update"],
                                            "collection": "account"}).json()["mutations"][0]
    sim.post("/_admin/config", json={"salesforce_late_commits": {"share": 0.0}}).raise_for_status()
    for step in (120, 90, 120):  # other changes keep the cursor moving while the transaction runs
        sim.post("/_admin/clock", json={"advance_s": step}).raise_for_status()
        sim.post("/_admin/mutate", json={"api": "salesforce", "count": 3, "kinds": ["update"],
                                         "collection": "account"}).raise_for_status()
        _sync_all(settings, run_incremental)
    ground = truth(simulator_url, "salesforce")  # committed by now, stamped 330 s before the clock
    assert ground["objects"]["account"][late["id"]]["version"] == late["version"]
    sim.post("/_admin/clock", json={"advance_s": 30}).raise_for_status()
    _sync_all(settings, run_incremental)
    _normalize_and_check(kafka_config, redis_url, simulator_url, settings)


def _server_clock(simulator_url: str):
    """The simulated org's clock (wall time plus what tests advanced it by): the receiver's clock, as the
    real receiver's and Salesforce's clocks agree."""
    return lambda: httpx.get(f"{simulator_url}/_admin/clock", timeout=10).json()["now"]


@pytest.fixture()
def receiver(kafka_config, simulator_url):
    """The real receiver in a fresh namespace, accepting the simulator's org (a 15-char id matches too)
    on the endpoint URL holding PATH_SECRET."""
    outbound = {"organization_ids": (ORG[:15],), "outbound_secrets": (PATH_SECRET,)}
    with namespaced_receiver("salesforce", kafka_config, api_options={"salesforce": outbound},
                             clock=_server_clock(simulator_url)) as (ns, base):
        yield ns, base


def test_outbound_messages_batched_duplicated_shuffled_end_as_truth(
        sim, kafka_config, redis_url, simulator_url, receiver):
    ns, base = receiver
    sim.post("/_admin/reset", json={"seed": 13, "objects": 4}).raise_for_status()
    time.sleep(0.5)  # the dispatcher applies a reset's "drop pending" on its next loop
    sim.post("/_admin/config", json={"salesforce_outbound": {"url": base + OM_PATH, "max_batch": 100},
                                     "webhook_chaos": {"shuffle": True, "duplicate_rate": 0.3}}).raise_for_status()
    touched = set()
    for _ in range(15):  # 2 changes per simulated second, several per object: real reordering
        for m in sim.post("/_admin/mutate", json={"api": "salesforce", "count": 2,
                                                  "kinds": ["create", "update"]}).json()["mutations"]:
            touched.add(f"salesforce.{m['collection']}.{m['id']}")
        sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
    # Transactions still open (late commits, if configured) commit now and push their notifications.
    lag_s = sim.get("/_admin/config").json()["salesforce_late_commits"]["lag_s"]
    sim.post("/_admin/clock", json={"advance_s": lag_s + 1}).raise_for_status()
    stats = wait_until_webhooks_delivered(sim, "salesforce_outbound")
    stored = len(read_topic(kafka_config, f"{ns}salesforce.webhooks"))
    assert stored >= 30 > stats["delivered"], "notifications were not batched"
    ledger = f"test:ledger:{uuid.uuid4().hex}"
    assert normalize_until_consumed("salesforce", kafka_config, redis.Redis.from_url(redis_url), stored,
                                    namespace=ns, ledger_prefix=ledger) == stored
    records = history(kafka_config, f"{ns}salesforce.records")
    assert set(records) == touched
    ground = truth(simulator_url, "salesforce")
    for key, past in records.items():
        _api, collection, ident = key.split(".", 2)
        expected = ground["objects"][collection][ident]
        assert (past[-1][0]["version"], past[-1][0]["data"]) == (expected["version"], expected["data"]), key
    assert record_problems("salesforce", (), records, ground) == []  # versions never backwards
    assert duplicate_event_ids(history(kafka_config, f"{ns}salesforce.events")) == []


def _soap(org: str, extra: str = "") -> bytes:
    return (f'{extra}<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
            f'<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId>'
            '<ActionId>04k5g000000ApisAAA</ActionId><Notification><Id>04l5g0000000001AAA</Id>'
            '<sObject xmlns:sf="urn:sobject.enterprise.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="sf:Account">'
            '<sf:Id>0015g0000000001AAA</sf:Id></sObject></Notification></notifications>'
            '</soapenv:Body></soapenv:Envelope>').encode()


@pytest.mark.parametrize(("body", "status", "says"), [
    (_soap("00D5g000009EvilAAA"), 403, "OrganizationId"),
    (_soap(ORG)[:-40], 400, "well-formed"),
    (b'{"type": "account.updated"}', 400, "well-formed"),
    (_soap(ORG, '<!DOCTYPE x [<!ENTITY a "aaaa">]>'), 400, "document type"),
    (_soap(ORG).replace(b"<OrganizationId>" + ORG.encode() + b"</OrganizationId>", b""), 400, "OrganizationId"),
])
def test_a_forged_or_malformed_soap_message_is_refused_and_nothing_produced(
        kafka_config, receiver, body, status, says):
    ns, base = receiver
    answer = httpx.post(base + OM_PATH, content=body, headers={"Content-Type": "text/xml"}, timeout=30)
    assert answer.status_code == status
    assert b"<faultstring>" in answer.content and says.encode() in answer.content
    assert b"Ack" not in answer.content
    assert read_topic(kafka_config, f"{ns}salesforce.webhooks", timeout=5) == []
    accepted = httpx.post(base + OM_PATH, content=_soap(ORG), headers={"Content-Type": "text/xml"}, timeout=30)
    assert accepted.status_code == 200 and b"<Ack>true</Ack>" in accepted.content
    stored = read_topic(kafka_config, f"{ns}salesforce.webhooks", timeout=30)
    assert [m.key() for m in stored] == [b"salesforce.account.0015g0000000001AAA"]
    assert b"SessionId" not in stored[0].value() and ORG.encode() in stored[0].value()


@pytest.mark.parametrize("path", ["/webhooks/salesforce/outbound-messages",
                                  "/webhooks/salesforce/outbound-messages/a-guessed-secret"])
def test_an_outbound_message_without_the_path_secret_is_refused_the_orgs_own_is_stored(
        sim, kafka_config, receiver, path):
    ns, base = receiver
    sim.post("/_admin/reset", json={"seed": 15, "objects": 2}).raise_for_status()
    answer = httpx.post(base + path, content=_soap(ORG), headers=salesforce_outbound.HEADERS, timeout=30)
    assert answer.status_code == 401 and b"path secret" in answer.content and b"Ack" not in answer.content
    sim.post("/_admin/config", json={"salesforce_outbound": {"url": base + OM_PATH}}).raise_for_status()
    created = sim.post("/_admin/mutate", json={"api": "salesforce", "count": 1, "kinds": ["create"],
                                               "collection": "account"}).json()["mutations"][0]
    assert wait_until_webhooks_delivered(sim, "salesforce_outbound")["delivered"] >= 1
    stored = read_topic(kafka_config, f"{ns}salesforce.webhooks", timeout=30)
    assert [m.key().decode() for m in stored] == [f"salesforce.account.{created['id']}"]


def _forged_notification(row: dict, index: int) -> str:
    """What anyone who learnt the endpoint URL can send: a real account, other content, a far-future stamp."""
    forged = {**row, "Name": "Forged Holdings", "SystemModstamp": "2099-01-01T00:00:00.000+0000"}
    return salesforce_outbound.notification(forged, f"04l5g00000Forg{index:02d}AAA", FIELDS["Account"])


def _normalize(kafka_config, redis_url, simulator_url, ns: str, ledger: str, expected: int) -> None:
    settings = settings_for("salesforce", kafka_config, redis_url, simulator_url)  # re-fetches, as deployed
    consumed = normalize_until_consumed("salesforce", kafka_config, redis.Redis.from_url(redis_url), expected,
                                        settings, namespace=ns, ledger_prefix=ledger)
    assert consumed == expected


def _accounts_equal_truth(kafka_config, simulator_url, ns: str) -> None:
    records, ground = history(kafka_config, f"{ns}salesforce.records"), truth(simulator_url, "salesforce")
    accounts = ground["objects"]["account"]
    assert set(records) == {f"salesforce.account.{ident}" for ident in accounts}
    for ident, expected in accounts.items():
        latest = records[f"salesforce.account.{ident}"][-1][0]
        assert (latest["version"], latest["data"]) == (expected["version"], expected["data"]), ident


def test_a_forged_far_future_stamp_never_freezes_a_record(sim, kafka_config, redis_url, simulator_url, receiver):
    ns, base = receiver
    ledger = f"test:ledger:{uuid.uuid4().hex}"
    sim.post("/_admin/reset", json={"seed": 16, "objects": 3}).raise_for_status()
    accounts = truth(simulator_url, "salesforce")["objects"]["account"]
    forged = salesforce_outbound.envelope(ORG, "https://apisync-sim.my.salesforce.com", [
        _forged_notification(entry["data"], i) for i, entry in enumerate(accounts.values())])
    answer = httpx.post(base + OM_PATH, content=forged, headers=salesforce_outbound.HEADERS, timeout=30)
    assert salesforce_outbound.acknowledged(answer.status_code, answer.content)  # stored: its content is judged later
    _normalize(kafka_config, redis_url, simulator_url, ns, ledger, expected=len(accounts))
    _accounts_equal_truth(kafka_config, simulator_url, ns)  # re-fetched: the API's content and version
    # then the org's own update of one of them, pushed with its real stamp, lands
    sim.post("/_admin/config", json={"salesforce_outbound": {"url": base + OM_PATH},
                                     "salesforce_late_commits": {"share": 0.0}}).raise_for_status()
    sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
    updated = sim.post("/_admin/mutate", json={"api": "salesforce", "count": 1, "kinds": ["update"],
                                               "collection": "account"}).json()["mutations"][0]
    wait_until_webhooks_delivered(sim, "salesforce_outbound")
    _normalize(kafka_config, redis_url, simulator_url, ns, ledger, expected=1)
    _accounts_equal_truth(kafka_config, simulator_url, ns)
    latest = history(kafka_config, f"{ns}salesforce.records")[f"salesforce.account.{updated['id']}"][-1][0]
    assert (latest["version"], latest["source"]) == (updated["version"], "webhook")
