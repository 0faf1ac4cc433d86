"""The GitHub source against real recorded GitHub responses: the `paginate-issues` scenario of
`@octokit/fixtures` (https://github.com/octokit/fixtures), served verbatim from a local HTTP server with
only the `Link` URLs rewritten to it. The package comes from the npm registry (`npm pack`), cached
under `.cache/`; node_modules is never created.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from apisync.apis.github.source import GitHubSource
from apisync.http import ApiClient, BearerTokenAuth

pytestmark = pytest.mark.integration
PACKAGE = "@octokit/fixtures@23.1.2"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "octokit-fixtures"
SCENARIO = "package/scenarios/api.github.com/paginate-issues/normalized-fixture.json"
REPO = "octokit-fixture-org/paginate-issues"


@pytest.fixture(scope="module")
def recorded() -> list[dict]:
    """The scenario's recorded exchanges, fetched once with `npm pack` into .cache/."""
    target = CACHE / SCENARIO
    if not target.exists():
        npm = shutil.which("npm") or pytest.fail("npm is needed to fetch @octokit/fixtures")
        CACHE.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=CACHE, check=True, capture_output=True,
                             text=True, timeout=300).stdout.strip().splitlines()[-1]
        with tarfile.open(CACHE / out) as archive:
            archive.extract(SCENARIO, CACHE, filter="data")
    return json.loads(target.read_text())


@pytest.fixture
def server(recorded):
    """Serves each recorded response at its recorded path (per `page`), Link URLs rewritten to here."""
    pages = {_page_of(x["path"]): x for x in recorded if "/issues" in x["path"]}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            seen.append(self.path)
            if urlsplit(self.path).path == f"/repos/{REPO}":
                # Not in the scenario: the repository document, as GitHub shapes it (id from the Link URLs).
                return self._answer(200, {"id": 1000, "full_name": REPO}, {})
            exchange = pages.get(_page_of(self.path))
            if exchange is None:
                return self._answer(404, {"message": "Not Found"}, {})
            headers = {k: v for k, v in exchange["headers"].items() if k not in ("content-length", "connection")}
            headers["link"] = headers.get("link", "").replace("https://api.github.com", base)
            return self._answer(exchange["status"], exchange["response"], headers)

        def _answer(self, status, body, headers):
            raw = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield base, seen
    httpd.shutdown()


def test_every_recorded_issue_is_listed_with_one_request_per_page(server, recorded):
    base, seen = server
    expected = {f"1000#{issue['number']}" for x in recorded for issue in x["response"]}  # keys: repository id
    source = GitHubSource(REPO, page_size=3)
    with ApiClient("github", base, BearerTokenAuth("recorded")) as client:
        listed = list(source.list_ids(client, "issue"))
    assert sorted(listed) == sorted(expected) and len(listed) == 13
    pages = [p for p in seen if "/issues" in p]
    assert len(pages) == len(recorded) == 5  # linear: one request per page, plus one repository lookup
    assert len(seen) == len(pages) + 1


def _page_of(path: str) -> int:
    return int(parse_qs(urlsplit(path).query).get("page", ["1"])[0])
