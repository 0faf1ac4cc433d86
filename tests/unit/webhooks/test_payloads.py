"""Raw webhook bodies → observations and Kafka keys."""

import orjson
import pytest

from apisync.events import ObservationError
from apisync.webhooks.dispatch import delivery_id, parse_webhook, webhook_key


def stripe_event(kind="customer.subscription.updated", obj=None, created=1_795_704_812):
    obj = obj if obj is not None else {"id": "sub_1", "object": "subscription", "status": "active"}
    return orjson.dumps({"id": "evt_1", "object": "event", "type": kind, "created": created,
                         "data": {"object": obj}})


def test_stripe_event_to_observation():
    obs = parse_webhook("stripe", stripe_event(), {}, "now")
    assert (obs.key, obs.version, obs.deleted, obs.source) == (
        "stripe.subscription.sub_1", 1_795_704_812_000, False, "webhook")
    assert obs.data == {"id": "sub_1", "object": "subscription", "status": "active"}


def test_stripe_deleted_and_thin_events():
    deleted = parse_webhook("stripe", stripe_event("customer.deleted",
                                                   {"id": "cus_9", "object": "customer", "deleted": True}), {})
    assert deleted.key == "stripe.customer.cus_9" and deleted.deleted and not deleted.thin
    thin = orjson.dumps({"id": "evt_2", "type": "invoice.updated", "created": 10,
                         "related_object": {"id": "in_1", "type": "invoice", "url": "/v1/invoices/in_1"}})
    obs = parse_webhook("stripe", thin, {})
    assert (obs.key, obs.thin, obs.data, obs.version) == ("stripe.invoice.in_1", True, None, 10_000)


def test_an_ended_subscription_is_an_update_not_a_delete():
    ended = {"id": "sub_1", "object": "subscription", "status": "canceled"}
    obs = parse_webhook("stripe", stripe_event("customer.subscription.deleted", ended), {})
    assert (obs.deleted, obs.data["status"], obs.thin) == (False, "canceled", False)


def test_a_payload_in_another_api_version_than_the_pinned_one_is_refetched():
    event = orjson.loads(stripe_event())
    pinned = parse_webhook("stripe", orjson.dumps({**event, "api_version": "2024-06-20"}), {},
                           api_version="2024-06-20")
    assert not pinned.thin and pinned.data is not None
    other = parse_webhook("stripe", orjson.dumps({**event, "api_version": "2023-10-16"}), {},
                          api_version="2024-06-20")
    assert other.thin and other.data is None and other.version == 1_795_704_812_000


def test_github_deliveries():
    issue = {"number": 7, "id": 99, "updated_at": "2026-11-26T14:53:32Z", "state": "open"}
    repo = {"full_name": "apisync/demo", "id": 7000001}
    obs = parse_webhook("github", orjson.dumps({"action": "edited", "issue": issue, "repository": repo}),
                        {"X-GitHub-Event": "issues"})
    assert (obs.key, obs.version, obs.deleted) == ("github.issue.7000001#7", 1_795_704_812_000, False)
    assert obs.key.split(".", 2)[2] == "7000001#7"  # ids may hold '/', '#' (and '.'): split at most twice
    moved = parse_webhook("github", orjson.dumps({"action": "transferred", "issue": issue, "repository": repo}),
                          {"X-GitHub-Event": "issues"})
    assert (moved.key, moved.deleted) == ("github.issue.7000001#7", True)  # gone from this repository
    assert moved.reason == "transferred to another repository"  # the delivery did not say where
    changes = {"new_issue": {"number": 31}, "new_repository": {"full_name": "apisync/tools"}}
    moved = parse_webhook("github", orjson.dumps({"action": "transferred", "issue": issue, "repository": repo,
                                                  "changes": changes}), {"X-GitHub-Event": "issues"})
    assert moved.reason == "transferred to apisync/tools#31"
    comment = {"id": 555, "updated_at": "2026-11-26T14:53:33Z"}
    obs = parse_webhook("github", orjson.dumps({"action": "deleted", "comment": comment, "issue": issue}),
                        {"x-github-event": "issue_comment"})
    assert (obs.key, obs.deleted) == ("github.issue_comment.555", True)
    pull = {**issue, "number": 8}
    obs = parse_webhook("github", orjson.dumps({"action": "closed", "pull_request": pull,
                                                "repository": {"full_name": "apisync/tools", "id": 7000002}}),
                        {"X-GitHub-Event": "pull_request"})
    assert obs.key == "github.pull_request.7000002#8"


def test_salesforce_delivery():
    record = {"Id": "001000000000000AAA", "Name": "Acme", "SystemModstamp": "2026-11-26T14:53:32.000+0000"}
    body = orjson.dumps({"type": "account.updated", "timestamp": "2026-11-26T14:53:40.000Z",
                         "data": {"sobject": "Account", "Id": record["Id"], "record": record}})
    obs = parse_webhook("salesforce", body, {"webhook-id": "msg_1"})
    assert (obs.key, obs.version, obs.data["Name"]) == (
        "salesforce.account.001000000000000AAA", 1_795_704_812_000, "Acme")
    deleted = orjson.dumps({"type": "contact.deleted", "timestamp": "2026-11-26T14:53:40.000Z",
                            "data": {"sobject": "Contact", "Id": "003000000000000AAA"}})
    obs = parse_webhook("salesforce", deleted, {})
    assert (obs.collection, obs.deleted, obs.thin, obs.version) == ("contact", True, False, 1_795_704_820_000)


@pytest.mark.parametrize("api, body, headers, reason", [
    ("stripe", b"{", {}, "not JSON"),
    ("stripe", b"[]", {}, "not a JSON object"),
    ("stripe", orjson.dumps({"type": "x.updated"}), {}, "integer created"),
    ("stripe", stripe_event(obj={"id": "pm_1", "object": "payment_method"}), {}, "no known object"),
    ("github", b"{}", {"X-GitHub-Event": "push"}, "not synced"),
    ("github", orjson.dumps({"issue": {"number": 1}}), {"X-GitHub-Event": "issues"}, "updated_at"),
    ("github", orjson.dumps({"issue": {"number": 1, "updated_at": "soon"}}), {"X-GitHub-Event": "issues"},
     "ISO 8601"),
    ("github", orjson.dumps({"issue": {"number": 1, "updated_at": "2026-11-26T14:53:32Z"}}),
     {"X-GitHub-Event": "issues"}, "repository.id"),
    ("salesforce", orjson.dumps({"type": "account.updated", "data": {"Id": "1"}}), {}, "sobject"),
    ("jira", b"{}", {}, "no webhooks for api"),
])
def test_unusable_payloads(api, body, headers, reason):
    with pytest.raises(ObservationError, match=reason):
        parse_webhook(api, body, headers)


def test_webhook_key_falls_back_to_delivery_id():
    assert webhook_key("stripe", stripe_event(), {}) == "stripe.subscription.sub_1"
    assert webhook_key("github", b"{}", {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "guid-1"}) == "guid-1"
    assert webhook_key("salesforce", b"{}", {"webhook-id": "msg_7"}) == "msg_7"
    unknown = orjson.dumps({"id": "evt_5", "type": "balance.available", "created": 1, "data": {"object": {}}})
    assert webhook_key("stripe", unknown, {}) == "evt_5"
    assert delivery_id("stripe", b"garbage", {}) is None
