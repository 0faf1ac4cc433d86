"""Raw webhook bodies → Observations, one small parser per provider (each API's spec names its parser;
`webhooks.dispatch` picks it by api).

- Stripe: the event object; the record is `data.object`, version = `created` × 1000 (Stripe objects
  carry no updated stamp); only the types that really delete (`customer.deleted`, `invoice.deleted`)
  are deletes: `customer.subscription.deleted` means the subscription ended, and it stays a record
  with `status: canceled`. A thin event (no `data.object`, only `related_object`), or one rendered in
  another API version than the pinned one, is flagged `thin` so the normalizer re-fetches the object.
  A sub-resource event (`charge.dispute.*`, `customer.discount.*`, ...: `data.object` is the dispute,
  discount, ...) is a thin observation of the parent it changes; one that belongs to no synced object is
  `NotSynced` (consumed, not dead-lettered).
  An event destination's thin event (`object: "v2.core.event"`, https://docs.stripe.com/event-destinations;
  v1 resources' types carry a `v1.` prefix, e.g. `v1.customer.updated`) has `created` as an ISO 8601
  string and names its object in `related_object` {id, type, url}: a thin observation at `created` in ms.
- GitHub: `X-GitHub-Event` issues | pull_request | issue_comment | pull_request_review_comment; the record
  is `issue` / `pull_request` (the fields a poll lists: `sources.github.record_data`) / `comment`, id
  `<repository.id>#<number>` (comments: the comment id),
  version = `updated_at` in ms, actions `deleted` and `transferred` are deletes. `pull_request_review`
  (submitted | edited | dismissed): the record is `review`, id `<repository.id>#<pull_request.number>/<review
  id>`, version = `submitted_at` in ms (see `sources.github_reviews`), its `state` in REST's upper case.
- Salesforce: Outbound Messaging (SOAP, one notification per stored message: see
  `outbound_messaging`), or a Standard Webhooks JSON relay: `data.record`, version = `SystemModstamp`
  in ms, `*.deleted` is a delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from apisync.events import NotSynced, Observation, ObservationError, iso_to_ms
from apisync.sources.github import record_data, record_id
from apisync.sources.github_reviews import review_record_id
from apisync.sources.stripe import COLLECTION_OF_OBJECT, DELETE_EVENTS
from apisync.sources.stripe_subresources import is_subresource, parent_of
from apisync.webhooks.outbound_messaging import observation as outbound_observation

_GITHUB_EVENTS = {"issues": ("issue", "issue"), "pull_request": ("pull_request", "pull_request"),
                  "issue_comment": ("comment", "issue_comment"),
                  "pull_request_review_comment": ("comment", "pull_request_review_comment")}
_GITHUB_COMMENTS = ("issue_comment", "pull_request_review_comment")  # keyed by their global id


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _load(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ObservationError("webhook body is not JSON") from None
    if not isinstance(doc, dict):
        raise ObservationError("webhook body is not a JSON object")
    return doc


STRIPE_THIN_EVENT = "v2.core.event"  # the `object` of an event destination's thin event


def parse_stripe(body: bytes, headers: Mapping[str, str], synced_at: str,
                 api_version: str | None = None) -> Observation:
    """A Stripe event → an observation of its object (thin if rendered in another than `api_version`)."""
    event = _load(body)
    if event.get("object") == STRIPE_THIN_EVENT:
        return _stripe_thin_event(event, synced_at)
    kind, created = event.get("type"), event.get("created")
    if not isinstance(kind, str) or not isinstance(created, int):
        raise ObservationError("Stripe event lacks type or integer created")
    obj = (event.get("data") or {}).get("object")
    if isinstance(obj, dict) and is_subresource(obj.get("object")):
        return _stripe_parent(kind, created, obj, synced_at)
    thin = not isinstance(obj, dict)
    if thin:
        # thin events name the object in related_object and carry no snapshot
        obj = event.get("related_object") or {}
    object_name = obj.get("object") or obj.get("type")
    collection = COLLECTION_OF_OBJECT.get(object_name)
    if collection is None or not obj.get("id"):
        raise ObservationError(f"Stripe event {kind!r} names no known object")
    deleted = kind in DELETE_EVENTS
    # The payload renders in the event's API version; another shape than the pinned one is re-fetched.
    thin = thin or (api_version is not None and event.get("api_version") not in (None, api_version))
    data = None if thin else obj
    return Observation("stripe", collection, str(obj["id"]), created * 1000, "webhook", synced_at,
                       data, deleted, thin and not deleted, reason=f"Stripe {kind} event" if deleted else None)


def _stripe_parent(kind: str, created: int, sub: dict[str, Any], synced_at: str) -> Observation:
    """A sub-resource event (a dispute, refund, discount, tax ID, card) → a thin observation of the parent it
    changes, which gets no event of its own (`sources.stripe_subresources`)."""
    parent = parent_of(sub)
    if parent is None:
        raise NotSynced(f"Stripe {kind} event: its {sub.get('object')} belongs to no synced object")
    collection, parent_id = parent
    return Observation("stripe", collection, parent_id, created * 1000, "webhook", synced_at, None, thin=True)


def _stripe_thin_event(event: dict[str, Any], synced_at: str) -> Observation:
    """A `v2.core.event` → a thin observation of `related_object` (a delete for a deleting type)."""
    kind, created, related = event.get("type"), event.get("created"), event.get("related_object")
    if not isinstance(kind, str) or not isinstance(created, str):
        raise ObservationError("Stripe thin event lacks type or ISO 8601 created")
    if not isinstance(related, dict) or not related.get("id"):
        raise ObservationError(f"Stripe thin event {kind!r} has no related_object")
    related_type = str(related.get("type") or "").removeprefix("v1.")
    if is_subresource(related_type):
        # A reference to the sub-resource names no parent; its snapshot event in /v1/events does, and the
        # incremental event window re-reads the parent from it.
        raise NotSynced(f"Stripe thin event {kind!r}: a {related_type} reference names no parent to re-fetch")
    collection = COLLECTION_OF_OBJECT.get(related_type)
    if collection is None:
        raise ObservationError(f"Stripe thin event {kind!r} names no known object")
    deleted = kind.removeprefix("v1.") in DELETE_EVENTS
    return Observation("stripe", collection, str(related["id"]), iso_to_ms(created), "webhook", synced_at,
                       None, deleted, not deleted, reason=f"Stripe {kind} event" if deleted else None)


def parse_github(body: bytes, headers: Mapping[str, str], synced_at: str) -> Observation:
    """A GitHub issues / pull_request / issue_comment / pull_request_review(_comment) delivery → an observation.

    Ids follow the source's key contract: `<repository id>#<number>` for issues and PRs (from the
    delivery's `repository.id`: its `full_name` changes with a rename and matches in any case, the id
    does not), the comment `id` for comments. `transferred` (the issue moved to another repository) is a
    delete here, like `deleted`.
    """
    event = _lower(headers).get("x-github-event", "")
    if event == "pull_request_review":
        return _github_review(_load(body), synced_at)
    if event not in _GITHUB_EVENTS:
        raise ObservationError(f"GitHub event {event!r} is not synced")
    field, collection = _GITHUB_EVENTS[event]
    doc = _load(body)
    obj = doc.get(field)
    if not isinstance(obj, dict) or not obj.get("updated_at"):
        raise ObservationError(f"GitHub {event} delivery lacks {field}.updated_at")
    ident = obj.get("id") if collection in _GITHUB_COMMENTS else obj.get("number")
    if ident is None:
        raise ObservationError(f"GitHub {event} delivery lacks the object's identifier")
    version = iso_to_ms(obj["updated_at"])
    if collection not in _GITHUB_COMMENTS:
        repository_id = (doc.get("repository") or {}).get("id")
        if not isinstance(repository_id, int) or isinstance(repository_id, bool) or not isinstance(ident, int):
            raise ObservationError(f"GitHub {event} delivery lacks repository.id or an integer number")
        ident = record_id(repository_id, ident)
    deleted = doc.get("action") in ("deleted", "transferred")
    reason = _github_delete_reason(event, doc) if deleted else None
    return Observation("github", collection, str(ident), version, "webhook", synced_at,
                       record_data(collection, obj), deleted, reason=reason)


def _github_review(doc: dict[str, Any], synced_at: str) -> Observation:
    """A `pull_request_review` delivery → an observation of the review at its `submitted_at`.

    Deliveries spell `state` in lower case ("approved", "dismissed": https://docs.github.com/en/webhooks/
    webhook-events-and-payloads#pull_request_review), the REST API in upper case ("APPROVED", "DISMISSED":
    https://docs.github.com/en/rest/pulls/reviews): the record keeps REST's, so both paths agree. No action
    deletes a submitted review (only a pending one is ever deleted, and pending ones send no delivery).
    """
    review, pull = doc.get("review"), doc.get("pull_request")
    repository_id = (doc.get("repository") or {}).get("id")
    if not isinstance(review, dict) or not review.get("submitted_at") or not isinstance(review.get("id"), int):
        raise ObservationError("GitHub pull_request_review delivery lacks review.id or review.submitted_at")
    number = pull.get("number") if isinstance(pull, dict) else None
    if not isinstance(repository_id, int) or isinstance(repository_id, bool) or not isinstance(number, int):
        raise ObservationError("GitHub pull_request_review delivery lacks repository.id or pull_request.number")
    data = {**review, "state": str(review.get("state", "")).upper()}
    return Observation("github", "pull_request_review", review_record_id(repository_id, number, review["id"]),
                       iso_to_ms(review["submitted_at"]), "webhook", synced_at, data, False)


def _github_delete_reason(event: str, doc: Mapping[str, Any]) -> str:
    """`transferred to owner/repo#n` (from the delivery's `changes`), else which delivery deleted it."""
    if doc.get("action") == "transferred":
        changes = doc.get("changes") or {}
        repo = (changes.get("new_repository") or {}).get("full_name")
        number = (changes.get("new_issue") or {}).get("number")
        return f"transferred to {repo}#{number}" if repo and number else "transferred to another repository"
    return f"GitHub {event}.deleted webhook"


def parse_salesforce(body: bytes, headers: Mapping[str, str], synced_at: str) -> Observation:
    """A Salesforce Outbound Message (XML) or Standard Webhooks delivery (JSON) → an observation."""
    if body.lstrip()[:1] == b"<":
        return outbound_observation(body, synced_at, headers)
    doc = _load(body)
    kind, data = doc.get("type"), doc.get("data")
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise ObservationError("Salesforce delivery lacks type or data")
    sobject, ident = data.get("sobject"), data.get("Id")
    if not isinstance(sobject, str) or not ident:
        raise ObservationError("Salesforce delivery lacks data.sobject or data.Id")
    record = data.get("record")
    deleted = kind.endswith(".deleted")
    if isinstance(record, dict) and record.get("SystemModstamp"):
        version = iso_to_ms(record["SystemModstamp"])
        return Observation("salesforce", sobject.lower(), str(ident), version, "webhook", synced_at,
                           record, deleted, reason=f"Salesforce {kind} delivery" if deleted else None)
    if not doc.get("timestamp"):
        raise ObservationError("Salesforce delivery has neither record.SystemModstamp nor timestamp")
    # no snapshot: the delivery time orders it and the normalizer re-fetches the record
    return Observation("salesforce", sobject.lower(), str(ident), iso_to_ms(doc["timestamp"]),
                       "webhook", synced_at, None, deleted, not deleted,
                       reason=f"Salesforce {kind} delivery" if deleted else None)
