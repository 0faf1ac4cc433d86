"""The simulated Salesforce against the examples in Salesforce's own docs, field by field.

Salesforce publishes no machine-readable schema for these resources, so the examples its REST API
Developer Guide, OAuth help pages and SOAP API Developer Guide print (recorded under
salesforce_examples/, sources in its README) are the reference. SalesforceSource is driven through its
public methods with OAuth 2.0 refresh-token auth (rotation on, a session expired midway), every exchange
is recorded and compared with the example of its resource; Outbound Messages are delivered by the
simulator's own dispatcher to a recording listener that answers with the receiver's acknowledgement.
"""

from __future__ import annotations

import copy
import re
import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from salesforce_shapes import EXAMPLES, case_safe_suffix, json_problems, load, xml_problems
from vendor_recording import Exchange, RecordingSimulator, run_quietly

from api_simulator.salesforce_model import FIELDS
from api_simulator.webhooks import WebhookDispatcher
from apisync.apis.salesforce import outbound_messaging
from apisync.apis.salesforce.source import API_VERSION, OBJECTS, SalesforceSource
from apisync.http import ApiClient
from apisync.http.oauth import OAuth2Auth
from apisync.settings import OAuthSettings

BASE = "http://sim.test"
PREFIX = f"/services/data/{API_VERSION}"
PAGE = 500  # keyset pages (SOQL LIMIT) inside one batch
QUERY_BATCH = 2000  # records per SOQL batch when the request sets no batchSize
SOBJECT_TAG = "{http://soap.sforce.com/2005/09/outbound}sObject"
# Resource -> (example, keys the doc marks conditional)
OPTIONAL = {"token.json": {"$.refresh_token"}, "error.json": {"$[].fields"}}


# --- recording ---------------------------------------------------------------------------------

def oauth_client(sim: RecordingSimulator) -> ApiClient:
    """The ApiClient a sync run builds for an org with the refresh-token grant, recording every exchange."""
    def forward(request: httpx.Request) -> httpx.Response:
        reply = sim.http.request(request.method, request.url.raw_path.decode(), headers=request.headers,
                                 content=request.content)
        sim.exchanges.append(Exchange(request.method, request.url.path, request.url.params.multi_items(), None,
                                      reply.status_code, _json(reply)))
        headers = [(k, v) for k, v in reply.headers.multi_items()
                   if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        return httpx.Response(reply.status_code, headers=headers, content=reply.content, request=request)
    creds = sim.sim.config.credentials
    settings = OAuthSettings("refresh_token", f"{BASE}/services/oauth2/token", creds.salesforce_client_id,
                             creds.salesforce_client_secret, creds.salesforce_refresh_token)
    return ApiClient("salesforce", BASE, OAuth2Auth("salesforce", settings, api_url=BASE),
                     transport=httpx.MockTransport(forward), max_retries=0, sleep=lambda s: None)


def _json(reply) -> object:
    try:
        return reply.json()
    except ValueError:
        return None


def drive(sim: RecordingSimulator) -> list[str]:
    """Every public method of SalesforceSource on every collection; a session expires on the way."""
    notes: list[str] = []
    client = oauth_client(sim)
    for collection in SalesforceSource.collections:
        source = SalesforceSource(page_size=PAGE)
        start = run_quietly(notes, source.incremental_start, client, collection)
        run_quietly(notes, source.backfill, client, collection, None, None)
        sim.sim.clock.advance(120)
        for kind in ("update", "update", "create", "delete"):
            sim.sim.models["salesforce"].mutate(kind, collection)
        sim.sim.sf_sessions.expire_all()  # the next request answers 401, the client renews its token
        if start:
            run_quietly(notes, source.incremental, client, collection, start)
        ids = run_quietly(notes, source.list_ids, client, collection) or []
        gone = ids[0][:3] + "5g0000099999"
        for object_id in ids[:2] + [gone + case_safe_suffix(gone)]:
            run_quietly(notes, source.fetch, client, collection, object_id)
        run_quietly(notes, source.refetch_many, client, collection, ids[:3])
        sobject = OBJECTS[collection][0]
        now = sim.sim.clock.now_s()
        window = {"start": _iso(now - 3600), "end": _iso(now)}
        run_quietly(notes, client.get, f"{PREFIX}/sobjects/{sobject}/deleted/", window)  # the source has no use for it
    sim.sim.models["salesforce"].drain_outbox()  # pushes are checked in test_outbound_message_*
    return notes


def _iso(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch_s))


@pytest.fixture(scope="module")
def recorded():
    sim = RecordingSimulator(objects=QUERY_BATCH + 50)  # past one SOQL batch, so list_ids follows a locator
    notes = drive(sim)
    return sim.exchanges, notes


# --- which example each exchange answers to ---------------------------------------------------

def selected_fields(soql: str) -> tuple[str, ...]:
    """The SELECT list of a SOQL statement."""
    found = re.match(r"SELECT (.+?) FROM (\w+)", soql)
    assert found, soql
    return tuple(name.strip() for name in found.group(1).split(","))


def comparisons(exchanges: list[Exchange]):
    """(exchange, example file, record fields or None) for every exchange, in order."""
    locators: dict[str, tuple[str, ...]] = {}  # nextRecordsUrl -> the SELECT list it continues
    for e in exchanges:
        if e.path == "/services/oauth2/token":
            yield e, "token.json", None
        elif e.status >= 400:
            yield e, "error.json", None
        elif e.path in (f"{PREFIX}/query", f"{PREFIX}/queryAll"):
            fields = selected_fields(dict(e.params)["q"])
            locators[e.answer.get("nextRecordsUrl")] = fields
            yield e, batch_example(e.answer), fields
        elif re.fullmatch(rf"{PREFIX}/(query|queryAll)/[^/]+", e.path):
            fields = locators[e.path]
            locators[e.answer.get("nextRecordsUrl")] = fields
            yield e, batch_example(e.answer), fields
        elif e.path.endswith("/updated/"):
            yield e, "updated.json", None
        elif e.path.endswith("/deleted/"):
            yield e, "deleted.json", None
        else:
            sobject = re.fullmatch(rf"{PREFIX}/sobjects/(\w+)/\w+", e.path)
            assert sobject, f"no recorded example for {e.line()}"
            yield e, "record.json", FIELDS[sobject.group(1)]


def batch_example(answer) -> str:
    """A batch with more to come shows `nextRecordsUrl` (query.json); the last one does not (query_more.json)."""
    return "query_more.json" if isinstance(answer, dict) and answer.get("done") is True else "query.json"


def problems_of(e: Exchange, example: str, fields) -> list[str]:
    return json_problems(load(example), e.answer, optional=OPTIONAL.get(example, ()), fields=fields)


# --- REST and OAuth --------------------------------------------------------------------------

def test_the_source_reaches_every_documented_resource(recorded):
    exchanges, notes = recorded
    assert not notes, notes
    used = {example for _, example, _ in comparisons(exchanges)}
    assert used == {"token.json", "error.json", "query.json", "query_more.json", "updated.json", "deleted.json",
                    "record.json"}
    assert any(re.fullmatch(rf"{PREFIX}/query/[^/]+", e.path) for e in exchanges), "no query locator walked"
    assert {e.status for e in exchanges} >= {200, 401, 404}


def test_every_answer_matches_its_documented_example(recorded):
    exchanges, _ = recorded
    problems = [f"{e.line()}: {p}" for e, example, fields in comparisons(exchanges)
                for p in problems_of(e, example, fields)[:3]]
    assert not problems, "\n".join(problems[:30])


def test_a_rotating_org_answers_every_refresh_with_a_new_refresh_token(recorded):
    """With rotation on, "the connected app issues a new refresh token along with the access token each time
    the flow is invoked" (OAuth 2.0 Refresh Token Flow for Renewed Sessions)."""
    exchanges, _ = recorded
    tokens = [e.answer for e in exchanges if e.path == "/services/oauth2/token"]
    assert len(tokens) >= 2, "want the first token and one renewal after the expired session"
    assert all(isinstance(t.get("refresh_token"), str) and t["refresh_token"] for t in tokens), tokens
    assert len({t["refresh_token"] for t in tokens}) == len(tokens)


def test_an_expired_session_answers_invalid_session_id(recorded):
    exchanges, _ = recorded
    expired = [e.answer for e in exchanges if e.status == 401]
    assert expired and all(a[0]["errorCode"] == "INVALID_SESSION_ID" for a in expired), expired


# --- Outbound Messaging -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outbound():
    """SOAP messages the simulator's dispatcher posts after a few edits, and how each was counted."""
    sim, received = RecordingSimulator(objects=3), []

    def listener(request: httpx.Request) -> httpx.Response:
        received.append(request.content)
        return httpx.Response(200, content=outbound_messaging.ack_body(),
                              headers={"Content-Type": outbound_messaging.CONTENT_TYPE})
    config = {**sim.sim.runtime, "salesforce_outbound": {**sim.sim.runtime["salesforce_outbound"],
                                                         "url": "http://listener.test/om/secret"}}
    dispatcher = WebhookDispatcher(lambda: config, client=httpx.Client(transport=httpx.MockTransport(listener)))
    model = sim.sim.models["salesforce"]
    for collection in ("account", "contact", "opportunity"):
        model.mutate("create", collection)
        model.mutate("update", collection)
    dispatcher.submit(model.drain_outbox())
    deadline = time.monotonic() + 30
    while any(dispatcher.pending().values()) and time.monotonic() < deadline:
        time.sleep(0.02)  # waits for the dispatcher's own count, not for a guessed duration
    dispatcher.stop()
    assert not any(dispatcher.pending().values()), dispatcher.pending()
    return received, dispatcher.stats["salesforce_outbound"]


def test_outbound_message_matches_the_wsdl_example(outbound):
    received, _ = outbound
    assert received, "the dispatcher posted nothing"
    problems = [p for body in received for p in xml_problems(load("outbound_notification.xml"),
                                                             ET.fromstring(body), free={SOBJECT_TAG})]
    assert not problems, "\n".join(problems[:30])


def test_the_receivers_ack_is_the_documented_notifications_response(outbound):
    _, stats = outbound
    assert xml_problems(load("outbound_ack.xml"), ET.fromstring(outbound_messaging.ack_body())) == []
    assert stats["delivered"] == stats["attempts"] >= 1, stats  # the simulated org accepts it as an Ack


# --- the check itself can fail ------------------------------------------------------------------

QUERY = {"totalSize": 1, "done": True, "records": [
    {"attributes": {"type": "Account", "url": f"{PREFIX}/sobjects/Account/0015g0000000001AAA"},
     "Id": "0015g0000000001AAA", "SystemModstamp": "2026-01-02T03:04:05.000+0000"}]}


@pytest.mark.parametrize(("drift", "expected"), [
    (lambda a: a.pop("done"), "$.done: missing"),
    (lambda a: a.update(queryLocator=None), "$.queryLocator: not in the doc example"),
    (lambda a: a.update(totalSize="1"), "$.totalSize: str where the doc shows int"),
    (lambda a: a.update(done=False, nextRecordsUrl="/services/data/v61.0/query/01g000000000000001-5"),
     "its case-safe suffix is AAA"),
    (lambda a: a.update(nextRecordsUrl="/services/data/v61.0/query/01g5g0000000001AAA-5"),
     "$.nextRecordsUrl: not in the doc example"),
    (lambda a: a.update(done=False), "$.nextRecordsUrl: missing"),
    (lambda a: a["records"][0].update(SystemModstamp="2026-01-02T03:04:05Z"), "is xsd datetime"),
    (lambda a: a["records"][0].update(Id="0015g0000000001"), "$.records[0].Id: '0015g0000000001' is text"),
    (lambda a: a["records"][0].update(Id="0015g0000000001AAB"), "its case-safe suffix is AAA"),
    (lambda a: a["records"][0].update(Name="x"), "$.records[0].Name: not asked for"),
    (lambda a: a["records"][0]["attributes"].update(url="/services/data/v61.0/sobjects/Account/0015g0000000002AAA"),
     "does not name Account 0015g0000000001AAA"),
])
def test_the_check_catches_a_drifted_query_answer(drift, expected):
    answer = copy.deepcopy(QUERY)
    fields = ("Id", "SystemModstamp")
    assert json_problems(load("query_more.json"), answer, fields=fields) == []
    drift(answer)
    problems = json_problems(load(batch_example(answer)), answer, fields=fields)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("drift", "expected"), [
    (lambda xml: xml.replace('<SessionId xsi:nil="true"/>', ""), "children"),
    (lambda xml: xml.replace("00D5e000000KQ2eEAG", "00D5e000000KQ2eAAA"), "case-safe suffix is EAG"),
    (lambda xml: xml.replace('<SessionId xsi:nil="true"/>', "<SessionId>abc</SessionId>"), "xsi:nil"),
    (lambda xml: xml.replace("2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05.000+0000"), "is salesforce datetime"),
    (lambda xml: xml.replace('xmlns:sf="urn:sobject.enterprise.soap.sforce.com"', 'xmlns:sf="urn:other"'),
     "not in the sObject namespace"),
])
def test_the_check_catches_a_drifted_outbound_message(drift, expected):
    text = (EXAMPLES / "outbound_notification.xml").read_text()
    example = load("outbound_notification.xml")
    assert xml_problems(example, ET.fromstring(text.encode()), free={SOBJECT_TAG}) == []
    problems = xml_problems(example, ET.fromstring(drift(text).encode()), free={SOBJECT_TAG})
    assert any(expected in p for p in problems), problems
