"""Every request StripeSource sends validates against stripe-mock, Stripe's official OpenAPI mock.

stripe-mock answers with fixture data and rejects (HTTP 400) query parameters that Stripe's OpenAPI
spec does not allow, so a 4xx from it is a request the real API would likely refuse too. The source
is driven only through its public methods with a recording transport, so the check follows whatever
requests the source builds; nothing here knows which parameters it sends.

stripe-mock is stateless: every list is one fixture page with has_more=false. To make the source
send its cursor parameters and take its other paths too, the recording transport can mark the first
list pages has_more=true (with page-unique ids), answer lists empty (an account with no objects yet),
or date the `Date` header back (a sync paused longer than Stripe keeps events). Requests still go to
stripe-mock unchanged; only what the source reads back is adjusted.

Run alone: PYTHONPATH=include:plugins .venv/bin/python -m pytest tests/integration/test_stripe_openapi.py
(the first run builds stripe-mock with `go install` into .cache/bin, about 30 s).
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from itertools import islice
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from apisync.apis.stripe.source import COLLECTIONS, StripeSource
from apisync.http import ApiClient, ApiError, BearerTokenAuth, FatalError
from devstack.stripe_mock import TEST_KEY, StripeMock

pytestmark = pytest.mark.integration

PAGES_WITH_MORE = 2  # list pages per endpoint and scenario that claim has_more, so the source pages on
MIN_REQUESTS = 10  # per collection, so the test cannot pass by sending (almost) nothing
MIN_PER_ENDPOINT = {"list": 4, "object": 1, "other": 2}
START_DATE = "2026-01-01"
PAUSE = timedelta(days=40)  # longer than Stripe keeps events (30 days)


# --- recording ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Exchange:
    """One request sent to stripe-mock and its answer."""

    scenario: str
    method: str
    url: str
    path: str
    status: int
    error: str | None  # stripe-mock's error message for a non-2xx answer
    stripe_version: str | None  # the Stripe-Version request header, if any

    def line(self) -> str:
        text = f"[{self.scenario}] {self.method} {unquote(self.url)} -> HTTP {self.status}"
        return f"{text}: {self.error}" if self.error else text


class RecordingTransport(httpx.BaseTransport):
    """Sends every request on to stripe-mock and records it with the response.

    Modes (set per scenario with `begin`): "as-is" passes responses through; "paginate" marks the
    first PAGES_WITH_MORE list pages per endpoint has_more=true and makes their ids page-unique;
    "empty" answers every list with no objects; "paused" dates the `Date` header PAUSE earlier
    (a cursor taken from the server clock then looks like a sync paused that long).
    """

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []
        self.scenario, self.mode = "", "as-is"
        self._pages: Counter[str] = Counter()

    def begin(self, scenario: str, mode: str = "as-is") -> None:
        self.scenario, self.mode = scenario, mode
        self._pages.clear()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        try:
            content = response.read()
        finally:
            response.close()
        error = None if response.is_success else _error_message(content)
        self.exchanges.append(Exchange(self.scenario, request.method, str(request.url), request.url.path,
                                       response.status_code, error, request.headers.get("stripe-version")))
        if response.is_success:
            content = self._adjust(request.url.path, content)
        # Body already decoded: drop the headers describing the wire form.
        headers = [(k, v) for k, v in response.headers.multi_items()
                   if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")]
        if self.mode == "paused":
            headers = [(k, _earlier(v) if k.lower() == "date" else v) for k, v in headers]
        return httpx.Response(response.status_code, headers=headers, content=content, request=request)

    def close(self) -> None:
        self.inner.close()

    def _adjust(self, path: str, content: bytes) -> bytes:
        if self.mode == "as-is":
            return content
        try:
            page = orjson.loads(content)
        except orjson.JSONDecodeError:
            return content
        if not (isinstance(page, dict) and page.get("object") == "list" and isinstance(page.get("data"), list)):
            return content
        if self.mode == "empty":
            page["data"], page["has_more"] = [], False
        elif self._pages[path] < PAGES_WITH_MORE:
            self._pages[path] += 1
            page["has_more"] = True
            for item in page["data"]:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    item["id"] = f"{item['id']}_p{self._pages[path]}"
        return orjson.dumps(page)


def _earlier(http_date: str) -> str:
    return format_datetime(parsedate_to_datetime(http_date) - PAUSE, usegmt=True)


def _error_message(content: bytes) -> str:
    try:
        body = orjson.loads(content)
        return str(body["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return content[:300].decode("utf-8", "replace")


def rejected(exchanges: list[Exchange]) -> list[Exchange]:
    """Requests stripe-mock refused (4xx): invalid parameters, unknown URL, bad auth or version."""
    return [e for e in exchanges if 400 <= e.status < 500]


def endpoint(path: str) -> str:
    """/v1/customers/cus_123 -> /v1/customers/{id}; list and feed paths stay as they are."""
    return re.sub(r"^(/v1/[^/]+)/[^/]+$", r"\1/{id}", path)


def stripe_client(base_url: str, transport: RecordingTransport, source: StripeSource | None = None) -> ApiClient:
    """The client the sync runner would build (with the source's `headers`, if any), minus retries."""
    return ApiClient("stripe", base_url, BearerTokenAuth(TEST_KEY), transport=transport, max_retries=0,
                     headers=getattr(source, "headers", None))


# --- driving the source ------------------------------------------------------------------------

@dataclass
class Drive:
    """Runs source calls as named scenarios; a failure not caused by a 4xx is kept as a note."""

    transport: RecordingTransport
    notes: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def run(self, scenario: str, mode: str, action: Callable[[], Any]) -> Any:
        self.transport.begin(scenario, mode)
        self.ran.append(scenario)
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - reported below; a 4xx is asserted from the recording
            if not (isinstance(exc, ApiError) and exc.status is not None and 400 <= exc.status < 500):
                self.notes.append(f"[{scenario}] raised {type(exc).__name__}: {exc}")
            return None


def take(items: Iterator[Any], n: int) -> list[Any]:
    try:
        return list(islice(items, n))
    finally:
        close = getattr(items, "close", None)
        if close:
            close()


def exercise(source: StripeSource, client: ApiClient, collection: str, drive: Drive) -> None:
    """Every public method of the source, from a fresh account and from one with data."""
    live = drive.run("incremental_start", "as-is", lambda: source.incremental_start(client, collection))
    fresh = drive.run("incremental_start, no events yet", "empty",
                      lambda: source.incremental_start(client, collection))
    paused = drive.run(f"incremental_start, {PAUSE.days} days ago", "paused",
                       lambda: source.incremental_start(client, collection))

    batches = drive.run("backfill", "paginate", lambda: take(source.backfill(client, collection, None, None), 2))
    if batches and not batches[0].done:
        drive.run("backfill, resumed from a checkpoint", "paginate",
                  lambda: take(source.backfill(client, collection, batches[0].cursor, None), 1))
    drive.run(f"backfill from {START_DATE}", "paginate",
              lambda: take(source.backfill(client, collection, None, START_DATE), 2))

    for name, cursor in (("incremental", live), ("incremental after a start with no events", fresh),
                         (f"incremental after a {PAUSE.days}-day pause", paused)):
        if cursor is None:
            drive.notes.append(f"[{name}] skipped: incremental_start gave no cursor")
            continue
        drive.run(name, "paginate", lambda cursor=cursor: take(source.incremental(client, collection, cursor), 2))

    ids = drive.run("list_ids", "paginate", lambda: take(source.list_ids(client, collection), 10)) or []
    if ids:
        drive.run("fetch", "as-is", lambda: source.fetch(client, collection, ids[0]))
    else:
        drive.notes.append("[fetch] skipped: list_ids gave no id")


def drive_collection(base_url: str, collection: str) -> Drive:
    drive = Drive(RecordingTransport(httpx.HTTPTransport()))
    source = StripeSource()
    with stripe_client(base_url, drive.transport, source) as client:
        exercise(source, client, collection, drive)
    return drive


def summary(exchanges: list[Exchange]) -> str:
    """Per endpoint: how many requests, and which query parameters they carried."""
    lines = []
    for name, count in sorted(Counter(endpoint(e.path) for e in exchanges).items()):
        keys = sorted({k for e in exchanges if endpoint(e.path) == name
                       for k, _ in httpx.URL(e.url).params.multi_items()})
        lines.append(f"  {name}: {count} requests; params {', '.join(keys) or '(none)'}")
    return "\n".join(lines)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stripe_mock_url(stack_dir):
    """stripe-mock on a free loopback port (APISYNC_STRIPE_MOCK_URL reuses a running one)."""
    if os.environ.get("APISYNC_STRIPE_MOCK_URL"):
        yield os.environ["APISYNC_STRIPE_MOCK_URL"]
        return
    server = StripeMock(stack_dir / "stripe-mock").start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def strict_stripe_mock_url(stack_dir):
    """A second stripe-mock that also rejects a Stripe-Version other than its spec's."""
    server = StripeMock(stack_dir / "stripe-mock-strict", strict_version_check=True).start()
    yield server.url
    server.stop()


# --- tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("collection", list(COLLECTIONS))
def test_every_request_validates_against_stripe_mock(stripe_mock_url, collection):
    drive = drive_collection(stripe_mock_url, collection)
    exchanges = drive.transport.exchanges
    print(f"{collection}: {len(exchanges)} requests to stripe-mock\n{summary(exchanges)}")
    for note in drive.notes:
        print(f"  note: {note}")
        warnings.warn(f"stripe {collection}: {note}", stacklevel=1)

    bad = rejected(exchanges)
    assert not bad, (f"stripe-mock rejected {len(bad)} of {len(exchanges)} requests for {collection}:\n"
                     + "\n".join(e.line() for e in bad))

    assert len(exchanges) >= MIN_REQUESTS, f"only {len(exchanges)} requests for {collection}:\n{summary(exchanges)}"
    list_path = COLLECTIONS[collection].path
    counts = Counter(endpoint(e.path) for e in exchanges)
    expected = {list_path: MIN_PER_ENDPOINT["list"], f"{list_path}/{{id}}": MIN_PER_ENDPOINT["object"]}
    expected |= {name: MIN_PER_ENDPOINT["other"] for name in counts if name not in expected}
    too_few = {name: counts[name] for name, least in expected.items() if counts[name] < least}
    assert not too_few, f"too few requests to {too_few} (want {expected}):\n{summary(exchanges)}"
    silent = [s for s in drive.ran if not any(e.scenario == s for e in exchanges)]
    assert not silent, f"scenarios that sent no request: {silent}"


@pytest.mark.parametrize(("path", "params", "message"), [
    ("/v1/customers", {"bogus_param": 1}, "additional properties are not allowed"),
    ("/v1/events", {"types": "customer.created"}, "value must be a slice"),
    ("/v1/customers", {"created[gte]": START_DATE}, "could not validate against any of the constraints"),
])
def test_harness_catches_a_request_stripe_mock_rejects(stripe_mock_url, path, params, message):
    """Self-check: stripe-mock really validates parameters, and the harness reports the refusal."""
    transport = RecordingTransport(httpx.HTTPTransport())
    transport.begin("self-check")
    with stripe_client(stripe_mock_url, transport) as client, pytest.raises(FatalError) as caught:
        client.get_json(path, params)
    assert caught.value.status == 400
    assert [e.status for e in rejected(transport.exchanges)] == [400]
    assert message in (transport.exchanges[0].error or ""), transport.exchanges[0].line()


@pytest.mark.parametrize(("query", "status"), [
    ("/v1/customers?created[gte]=1767225600", 200),
    ("/v1/customers?created%5Bgte%5D=1767225600&created%5Blte%5D=1767312000", 200),
    ("/v1/customers?created=1767225600", 200),
    ("/v1/customers?created[gte]=2026-01-01", 400),
    ("/v1/customers?created[gte]=", 400),
    ("/v1/events?types[]=customer.created&types[]=customer.updated", 200),
    ("/v1/events?types%5B%5D=customer.created", 200),
    ("/v1/events?types[0]=customer.created&types[1]=customer.updated", 200),
    ("/v1/events?types=customer.created", 400),
    ("/v1/events?types=customer.created&types=customer.updated", 400),
    ("/v1/events?types=customer.created,customer.updated", 400),
    ("/v1/customers?starting_after=cus_123&limit=100", 200),
    ("/v1/events?ending_before=evt_123&limit=100", 200),
    ("/v1/customers?limit=ten", 400),
])
def test_stripe_mock_parameter_encodings(stripe_mock_url, query, status):
    """Which query encodings stripe-mock accepts: Rack-style brackets, not repeated or comma-joined keys."""
    response = httpx.get(f"{stripe_mock_url}{query}", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10)
    assert response.status_code == status, response.text


def test_stripe_version_header_against_strict_stripe_mock(strict_stripe_mock_url):
    """stripe-mock ignores Stripe-Version unless started with -strict-version-check; then it must match
    the API version of its bundled spec. Stripe itself accepts any released version, so a mismatch is
    reported as a warning, not a failure."""
    exchanges = [e for c in COLLECTIONS for e in drive_collection(strict_stripe_mock_url, c).transport.exchanges]
    versions = {e.stripe_version for e in exchanges if e.stripe_version}
    if not versions:
        pytest.skip("the Stripe source sends no Stripe-Version header")
    assert len(versions) == 1, f"requests pin different Stripe-Version values: {sorted(versions)}"
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", v) for v in versions), versions
    mismatched = [e for e in rejected(exchanges) if "Stripe-Version" in (e.error or "")]
    if mismatched:
        warnings.warn(f"stripe-mock's spec is for another API version: {mismatched[0].error}", stacklevel=1)
    other = [e for e in rejected(exchanges) if e not in mismatched]
    assert not other, "\n".join(e.line() for e in other)
