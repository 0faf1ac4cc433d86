"""REST helpers (pools, trigger, wait) against a scripted /api/v2, via httpx.MockTransport."""

from __future__ import annotations

import json

import httpx
import pytest

from apisync_airflow import rest
from apisync_airflow.pools import declared_pools, ensure_pools


def client_for(handler) -> httpx.Client:
    return httpx.Client(base_url="http://af/api/v2", transport=httpx.MockTransport(handler))


def test_ensure_pools_creates_missing_and_updates_existing():
    existing = {"apisync_stripe": 1}
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        # Shaped like Airflow 3.3: PATCH /pools/{name} wants the whole pool with `pool` and
        # `include_deferred` (422 otherwise); POST names it `name`.
        body = json.loads(request.content)
        seen.append((request.method, request.url.path, body["slots"]))
        if request.method == "PATCH":
            name = request.url.path.rsplit("/", 1)[1]
            if body.get("pool") != name or "include_deferred" not in body:
                return httpx.Response(422, json={"detail": "Field required"})
            if name not in existing:
                return httpx.Response(404, json={"detail": "not found"})
        else:
            name = body["name"]
        existing[name] = body["slots"]
        return httpx.Response(200, json=body)

    names = ensure_pools(client_for(handler), apis=("stripe",))
    assert names == ["apisync_stripe", "apisync_stripe_normalizer"]
    assert existing == {"apisync_stripe": 4, "apisync_stripe_normalizer": 1}
    assert ("POST", "/api/v2/pools", 1) in seen and ("PATCH", "/api/v2/pools/apisync_stripe", 4) in seen


def test_declared_pools_cover_every_api():
    from apisync.registry import APIS

    assert len(APIS) >= 4 and len(declared_pools()) == 2 * len(APIS)  # a sync pool and a normalizer pool each


def test_trigger_sends_params_as_conf():
    sent = {}

    def handler(request):
        sent.update(json.loads(request.content))
        return httpx.Response(200, json={"dag_run_id": "manual__x"})

    assert rest.trigger(client_for(handler), "stripe_backfill", {"collections": ["customer"]}) == "manual__x"
    assert sent == {"logical_date": None, "conf": {"collections": ["customer"]}}


def test_trigger_refusal_is_reported_with_the_answer():
    handler = lambda request: httpx.Response(400, json={"detail": "Invalid input for param collections"})  # noqa: E731
    with pytest.raises(rest.AirflowRestError, match="HTTP 400.*param collections"):
        rest.trigger(client_for(handler), "stripe_backfill", {"collections": ["x"]})


def test_wait_for_run_returns_the_final_state():
    states = iter(["queued", "running", "running", "failed"])

    def handler(request):
        return httpx.Response(200, json={"state": next(states)})

    assert rest.wait_for_run(client_for(handler), "d", "r", sleep=lambda _s: None) == "failed"


def test_wait_for_run_times_out_with_task_states():
    now = [0.0]

    def handler(request):
        if request.url.path.endswith("/taskInstances"):
            return httpx.Response(200, json={"task_instances": [{"task_id": "backfill", "map_index": 0,
                                                                 "state": "up_for_retry"}]})
        return httpx.Response(200, json={"state": "running"})

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(rest.AirflowRestError, match=r"still running.*backfill\[0\]': 'up_for_retry'"):
        rest.wait_for_run(client_for(handler), "d", "r", timeout=10, sleep=sleep, clock=lambda: now[0])


def test_ensure_pools_retries_a_busy_database():
    answers = iter([500, 500, 200, 200])
    waits = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={})

    assert ensure_pools(client_for(handler), apis=("stripe",), sleep=waits.append) == [
        "apisync_stripe", "apisync_stripe_normalizer"]
    assert waits == [1.0, 2.0]
