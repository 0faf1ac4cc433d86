"""GitHub webhooks: the `X-Hub-Signature-256` scheme, and a delivery → an observation.

- Signature (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries):
  `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, no timestamp.
- `X-GitHub-Event` issues | pull_request | issue_comment | pull_request_review_comment: the record
  is `issue` / `pull_request` (the fields a poll lists: `source.record_data`) / `comment`, id
  `<repository.id>#<number>` (comments: the comment id),
  version = `updated_at` in ms, actions `deleted` and `transferred` are deletes. `pull_request_review`
  (submitted | edited | dismissed): the record is `review`, id `<repository.id>#<pull_request.number>/<review
  id>`, version = `submitted_at` in ms (see `reviews`), its `state` in REST's upper case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.apis.github.keys import record_data, record_id
from apisync.apis.github.reviews import review_record_id
from apisync.events import Observation, ObservationError, iso_to_ms
from apisync.webhooks.payloads import json_object, lowered
from apisync.webhooks.signatures import (
    DEFAULT_TOLERANCE_S,
    NO_REQUEST,
    InvalidSignature,
    MalformedSignature,
    RequestLine,
    any_match,
    hmac_sha256,
    required_header,
    unhex,
)

_GITHUB_EVENTS = {"issues": ("issue", "issue"), "pull_request": ("pull_request", "pull_request"),
                  "issue_comment": ("comment", "issue_comment"),
                  "pull_request_review_comment": ("comment", "pull_request_review_comment")}
_GITHUB_COMMENTS = ("issue_comment", "pull_request_review_comment")  # keyed by their global id


@dataclass(frozen=True, slots=True)
class GitHubSignature:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; GitHub signs no timestamp."""

    secrets: tuple[str, ...] = field(repr=False)
    tolerance_s: int = DEFAULT_TOLERANCE_S  # unused: kept so every scheme takes the same settings
    header = "X-Hub-Signature-256"

    def verify(self, body: bytes, headers: Mapping[str, str], now: float, request: RequestLine = NO_REQUEST) -> None:
        """Raise SignatureError unless the sha256 signature matches one active secret."""
        scheme, _, hexdigest = required_header(headers, self.header).partition("=")
        if scheme != "sha256" or not hexdigest:
            raise MalformedSignature("X-Hub-Signature-256 must look like sha256=<hex>")
        given = [unhex(hexdigest, self.header)]
        expected = [hmac_sha256(s.encode(), body) for s in self.secrets]
        if not any_match(expected, given):
            raise InvalidSignature("X-Hub-Signature-256 does not match any active secret")



def parse_github(body: bytes, headers: Mapping[str, str], synced_at: str) -> Observation:
    """A GitHub issues / pull_request / issue_comment / pull_request_review(_comment) delivery → an observation.

    Ids follow the source's key contract: `<repository id>#<number>` for issues and PRs (from the
    delivery's `repository.id`: its `full_name` changes with a rename and matches in any case, the id
    does not), the comment `id` for comments. `transferred` (the issue moved to another repository) is a
    delete here, like `deleted`.
    """
    event = lowered(headers).get("x-github-event", "")
    if event == "pull_request_review":
        return _github_review(json_object(body), synced_at)
    if event not in _GITHUB_EVENTS:
        raise ObservationError(f"GitHub event {event!r} is not synced")
    field, collection = _GITHUB_EVENTS[event]
    doc = json_object(body)
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
