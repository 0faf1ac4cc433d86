"""Refresh-token rotation and instance_url in OAuth2Auth, against a token endpoint that rotates like Salesforce.

Salesforce (Help article 005316711, "Force one-time-use Refresh Tokens"): every refresh answers a new refresh
token and invalidates the one sent; reusing an invalidated one revokes the live refresh token and every access
token of the family. The token answer's `instance_url` names where the org's API lives.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

import httpx
import pytest

from apisync.http import ApiClient, FatalError, OAuth2Auth
from apisync.http.refresh_tokens import LocalRefreshTokens
from apisync.settings import OAuthSettings

TOKEN_URL = "https://login.example/services/oauth2/token"
SEED = "5Aep861-seed-refresh-token"
OLD, NEW = "https://na1.example", "https://na7.example"
SETTINGS = OAuthSettings("refresh_token", TOKEN_URL, "cid", client_secret="s3cr3t", refresh_token=SEED)
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


class RotatingSalesforce:
    """A token endpoint with rotation (or not), sessions that die after `uses` requests, and an API that
    answers on `instance` only."""

    def __init__(self, uses: int = 2, rotation: bool = True, instance: str = OLD) -> None:
        self.uses, self.rotation, self.instance = uses, rotation, instance
        self.live: str | None = SEED
        self.retired: set[str] = set()
        self.revocations = 0
        self.sessions: dict[str, int] = {}  # access token -> requests left
        self.api_hosts: list[str] = []
        self.issued_refresh: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return self._token(parse_qs(request.content.decode()))
        self.api_hosts.append(request.headers["host"])
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if f"{request.url.scheme}://{request.url.host}" != self.instance or self.sessions.get(token, 0) <= 0:
            return httpx.Response(401, json=EXPIRED)
        self.sessions[token] -= 1
        return httpx.Response(200, json={"records": []})

    def _token(self, form: dict) -> httpx.Response:
        sent = form["refresh_token"][0]
        if sent in self.retired:  # reuse: the family is revoked, access tokens included
            self.live, self.sessions = None, {}
            self.revocations += 1
        if sent != self.live:
            return httpx.Response(400, json={"error": "invalid_grant",
                                             "error_description": "expired access/refresh token"})
        access = f"00Dx!access{len(self.sessions)}"
        self.sessions[access] = self.uses
        answer = {"access_token": access, "instance_url": self.instance, "token_type": "Bearer"}
        if self.rotation:
            self.retired.add(sent)
            self.live = f"5Aep861-rotated-{len(self.retired)}"
            self.issued_refresh.append(self.live)
            answer["refresh_token"] = self.live
        return httpx.Response(200, json=answer)


def _client(api: RotatingSalesforce, auth: OAuth2Auth, base_url: str = OLD) -> ApiClient:
    return ApiClient("salesforce", base_url, auth, transport=httpx.MockTransport(api), max_retries=0,
                     sleep=lambda s: None)


def test_every_refresh_uses_the_token_the_previous_one_rotated_in():
    api = RotatingSalesforce(uses=2)
    client = _client(api, OAuth2Auth("salesforce", SETTINGS))
    for _ in range(9):
        assert client.get_json("/services/data/v61.0/query").data == {"records": []}
    assert len(api.retired) == 5 and api.revocations == 0  # five refreshes, each with the newest token


def test_two_workers_sharing_the_store_refresh_in_turn_and_nothing_is_revoked():
    api = RotatingSalesforce(uses=1)
    shared = LocalRefreshTokens(SEED)  # what RedisRefreshTokens is across processes
    first = _client(api, OAuth2Auth("salesforce", SETTINGS, refresh_tokens=shared))
    second = _client(api, OAuth2Auth("salesforce", SETTINGS, refresh_tokens=shared))
    for _ in range(4):
        first.get_json("/q")
        second.get_json("/q")
    assert api.revocations == 0 and len(api.retired) == 8


def test_a_worker_with_its_own_copy_of_the_seed_gets_the_family_revoked():
    """What the shared store prevents: the realistic failure it is there for."""
    api = RotatingSalesforce(uses=1)
    _client(api, OAuth2Auth("salesforce", SETTINGS)).get_json("/q")
    with pytest.raises(FatalError, match="invalid_grant"):
        _client(api, OAuth2Auth("salesforce", SETTINGS)).get_json("/q")
    assert api.revocations == 1


def test_without_rotation_the_configured_token_keeps_working():
    api = RotatingSalesforce(uses=1, rotation=False)
    client = _client(api, OAuth2Auth("salesforce", SETTINGS))
    for _ in range(3):
        client.get_json("/q")
    assert api.live == SEED and api.revocations == 0


def test_a_stale_writer_never_replaces_a_newer_token():
    store = LocalRefreshTokens(SEED)
    assert store.replace(SEED, "rt-2")
    assert not store.replace(SEED, "rt-from-a-slow-worker")  # it refreshed with a token already rotated away
    with store.held() as current:
        assert current == "rt-2"


def test_rotated_tokens_reach_no_log_and_no_error(caplog):
    api = RotatingSalesforce(uses=1)
    auth = OAuth2Auth("salesforce", SETTINGS)
    client = _client(api, auth)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            client.get_json("/q")
        api.live = None  # the family ends (an admin revoked it): the next refresh is refused
        with pytest.raises(FatalError) as refused:
            client.get_json("/q")
    text = caplog.text + str(refused.value) + repr(auth)
    assert api.issued_refresh and not any(token in text for token in [SEED, *api.issued_refresh])


def test_requests_follow_the_instance_url_of_the_token_answer():
    api = RotatingSalesforce(uses=5, instance=NEW)  # the org moved: its API answers on na7 only
    client = _client(api, OAuth2Auth("salesforce", SETTINGS, api_url=OLD), base_url=OLD)
    for path in ("/services/data/v61.0/query", f"{OLD}/services/data/v61.0/query/01g-2000"):
        assert client.get_json(path).data == {"records": []}
    assert api.api_hosts == ["na7.example", "na7.example"]


def test_requests_to_other_hosts_keep_their_address():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t", "instance_url": NEW})
        seen.append(str(request.url))
        return httpx.Response(200, json={})

    client = ApiClient("salesforce", OLD, OAuth2Auth("salesforce", SETTINGS, api_url=OLD),
                       transport=httpx.MockTransport(handler), max_retries=0)
    client.get_json("https://files.example/x")
    assert seen == ["https://files.example/x"]
