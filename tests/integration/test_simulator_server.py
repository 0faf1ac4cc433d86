"""The simulator as a real server: transport faults over TCP, webhooks to a real receiver, Date header."""
from __future__ import annotations

import hashlib
import hmac
import threading
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

pytestmark = pytest.mark.integration
STRIPE = {"Authorization": "Bearer sk_test_apisync"}


@pytest.fixture
def admin(simulator_url):
    with httpx.Client(base_url=simulator_url, timeout=10) as client:
        client.post("/_admin/reset", json={"seed": 5, "objects": 40}).raise_for_status()
        client.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 0}}}).raise_for_status()
        yield client
        client.delete("/_admin/faults")
        client.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 25}},
                                            "webhooks": {"github": {"url": None, "secrets": []}}})


@pytest.fixture
def receiver():
    """A plain HTTP server on 127.0.0.1 recording POSTs (fails the first one)."""
    got: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(500 if len(got) == 1 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", ["reset", "truncated", "timeout"])
def test_transport_faults_break_the_connection(simulator_url, admin, kind):
    admin.post("/_admin/faults", json={"kind": kind, "api": "stripe", "delay_s": 0.5}).raise_for_status()
    # The faults end the connection after delay_s; the client's timeout only has to outlast that.
    with httpx.Client(base_url=simulator_url, headers=STRIPE, timeout=30) as client:
        with pytest.raises(httpx.TransportError):
            client.get("/v1/customers", params={"limit": 100})
        assert client.get("/v1/customers").status_code == 200


def test_github_webhook_is_signed_and_redelivered_with_same_guid(admin, receiver):
    url, got = receiver
    admin.post("/_admin/config", json={"webhooks": {"github": {"url": url, "secrets": ["topsecret"]}},
                                       "webhook_chaos": {"retry_base_s": 0.05, "duplicate_rate": 0.0,
                                                         "shuffle": False}}).raise_for_status()
    admin.post("/_admin/mutate", json={"api": "github", "count": 1, "kinds": ["create"],
                                       "collection": "issue"}).raise_for_status()  # one delivery, no review
    import time
    deadline = time.monotonic() + 60  # generous: only a stuck dispatcher takes this long
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(got) == 2, admin.get("/_admin/stats").json()
    (h1, b1), (h2, b2) = got
    assert h1["x-github-delivery"] == h2["x-github-delivery"] and b1 == b2
    assert h1["x-hub-signature-256"] == "sha256=" + hmac.new(b"topsecret", b1, hashlib.sha256).hexdigest()
    assert h1["x-github-event"] in ("issues", "pull_request", "issue_comment")


def test_date_header_follows_the_server_clock(simulator_url, admin):
    with httpx.Client(base_url=simulator_url, headers=STRIPE, timeout=5) as client:
        before = parsedate_to_datetime(client.get("/v1/customers").headers["date"])
        admin.post("/_admin/clock", json={"advance_s": 7200}).raise_for_status()
        after = parsedate_to_datetime(client.get("/v1/customers").headers["date"])
    assert (after - before).total_seconds() >= 7200
