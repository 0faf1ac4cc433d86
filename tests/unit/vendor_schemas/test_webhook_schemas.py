"""The simulator's GitHub and HubSpot webhook bodies against the vendors' schemas.

Bodies are taken as delivered: the simulator's own dispatcher posts them to a recording listener after a
run of creates, updates and deletes. GitHub's go through githubkit's webhook models (generated from
GitHub's published webhook schemas; one model per event and action, fields the model does not declare
reported too); HubSpot's through the documented payload (webhook_examples/, sources in its README).
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import httpx
import orjson
import pytest
from vendor_recording import RecordingSimulator, model_errors

from api_simulator.webhooks import WebhookDispatcher

HUBSPOT_EXAMPLE = json.loads((Path(__file__).parent / "webhook_examples" / "hubspot_webhooks.json").read_text())
HUBSPOT_ALSO = {"sourceId": str}  # sent on some events besides the example's fields
GITHUB_EVENTS = ("issues", "issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment")


def deliveries(api: str, rounds: int = 3) -> list[httpx.Request]:
    """What the dispatcher posts for `rounds` of every mutation the simulated API offers."""
    sim, received = RecordingSimulator(objects=5), []

    def listener(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(204)
    webhooks = {**sim.sim.runtime["webhooks"], api: {"url": f"http://listener.test/{api}", "secrets": ["s3cret"]}}
    config = {**sim.sim.runtime, "webhooks": webhooks}
    dispatcher = WebhookDispatcher(lambda: config, client=httpx.Client(transport=httpx.MockTransport(listener)))
    model = sim.sim.models[api]
    sim.sim.clock.advance(60)
    for _ in range(rounds):
        for kind, collections in model.mutable.items():
            for collection in collections:
                model.mutate(kind, collection)
    dispatcher.submit(model.drain_outbox())
    deadline = time.monotonic() + 30
    while any(dispatcher.pending().values()) and time.monotonic() < deadline:
        time.sleep(0.02)  # waits for the dispatcher's own count, not for a guessed duration
    dispatcher.stop()
    assert not any(dispatcher.pending().values()), dispatcher.pending()
    return received


# --- HubSpot -------------------------------------------------------------------------------------

def hubspot_event_problems(event: dict) -> list[str]:
    """Keys and JSON types of one event against the documented one of its kind."""
    kind = str(event.get("subscriptionType", "")).rpartition(".")[2]
    example = HUBSPOT_EXAMPLE[0] if kind == "propertyChange" else HUBSPOT_EXAMPLE[1]
    where = f"{event.get('subscriptionType')} {event.get('eventId')}"
    problems = [f"{where}: {k} missing" for k in example if k not in event]
    for key, value in event.items():
        wanted = type(example[key]) if key in example else HUBSPOT_ALSO.get(key)
        if wanted is None:
            problems.append(f"{where}: {key} is not in the documented payload")
        elif type(value) is not wanted:
            problems.append(f"{where}: {key}={value!r} is {type(value).__name__}, the doc shows {wanted.__name__}")
    return problems


@pytest.fixture(scope="module")
def hubspot_bodies():
    return [orjson.loads(request.content) for request in deliveries("hubspot")]


def test_hubspot_delivers_json_arrays_of_documented_events(hubspot_bodies):
    assert hubspot_bodies and all(isinstance(body, list) and 1 <= len(body) <= 100 for body in hubspot_bodies)
    events = [event for body in hubspot_bodies for event in body]
    kinds = {event["subscriptionType"].rpartition(".")[2] for event in events}
    assert kinds >= {"creation", "propertyChange", "deletion"}, kinds
    problems = [p for event in events for p in hubspot_event_problems(event)]
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize(("drift", "expected"), [
    (lambda e: e.pop("portalId"), "portalId missing"),
    (lambda e: e.update(occurredAt="2026-01-01T00:00:00Z"), "occurredAt='2026-01-01T00:00:00Z' is str"),
    (lambda e: e.update(objectId=str(e["objectId"])), "objectId="),
    (lambda e: e.update(objectType="contact"), "objectType is not in the documented payload"),
])
def test_the_check_catches_a_drifted_hubspot_event(drift, expected):
    event = dict(HUBSPOT_EXAMPLE[0])
    assert hubspot_event_problems(event) == []
    drift(event)
    assert any(expected in p for p in hubspot_event_problems(event)), hubspot_event_problems(event)


# --- GitHub --------------------------------------------------------------------------------------

def github_event_model(event: str):
    """githubkit's discriminated union of one event's actions (REST API version 2022-11-28)."""
    return importlib.import_module(f"githubkit_schemas.v2022_11_28.webhooks.{event}").Event


# Actions whose bodies carry fields of their own (`changes`, `before`/`after`, `requested_reviewer`): enough
# rounds that each is sent and checked.
GITHUB_ACTIONS = {"issues": {"opened", "edited", "closed", "deleted", "transferred"},
                  "issue_comment": {"created", "edited", "deleted"},
                  "pull_request": {"opened", "edited", "synchronize", "review_requested"},
                  "pull_request_review": {"submitted", "edited", "dismissed"},
                  "pull_request_review_comment": {"created", "edited", "deleted"}}


@pytest.fixture(scope="module")
def github_bodies():
    return [(request.headers["X-GitHub-Event"], orjson.loads(request.content))
            for request in deliveries("github", rounds=12)]


@pytest.mark.parametrize("event", GITHUB_EVENTS)
def test_github_webhook_bodies_validate_against_githubkit(github_bodies, event):
    bodies = [body for name, body in github_bodies if name == event]
    assert {body.get("action") for body in bodies} >= GITHUB_ACTIONS[event]
    problems = [f"{event}.{body.get('action')}: {p}" for body in bodies
                for p in model_errors(github_event_model(event), body)[:5]]
    assert not problems, "\n".join(problems[:30])


def test_github_sends_every_checked_event(github_bodies):
    assert {name for name, _ in github_bodies} >= set(GITHUB_EVENTS)


def test_the_check_catches_a_drifted_github_body():
    """Self-check: a body githubkit accepts stops validating once a required field goes."""
    sender = {"login": "octocat", "id": 1, "node_id": "MDQ6VXNlcjE=", "avatar_url": "https://a", "gravatar_id": "",
              "url": "https://a", "html_url": "https://a", "followers_url": "https://a", "following_url": "https://a",
              "gists_url": "https://a", "starred_url": "https://a", "subscriptions_url": "https://a",
              "organizations_url": "https://a", "repos_url": "https://a", "events_url": "https://a",
              "received_events_url": "https://a", "type": "User", "site_admin": False}
    body = {"zen": "Keep it logically awesome.", "hook_id": 1, "sender": sender}
    model = github_event_model("ping")
    assert model_errors(model, body) == []
    body["sender"] = {k: v for k, v in sender.items() if k != "node_id"}
    problems = model_errors(model, body)
    assert any(p.startswith("sender.") and p.endswith("node_id: Field required") for p in problems), problems
