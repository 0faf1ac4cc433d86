"""GitHub as apisync knows it: the spec. Keys (by repository id, whatever a repository's name or its case)
and redirects live in `source`, its keyset and pull-request walks in `walks`, reviews in `reviews`; the
signature scheme and the payload parser in `webhook`.

Rate limits (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api): over
the primary limit → 403 or 429 with `x-ratelimit-remaining: 0`, wait until `x-ratelimit-reset`
(epoch s); a secondary limit → 403/429 with a message, honour `retry-after`, else wait at least 60 s.
A 403 without those signals is a permission error: fatal. Every response carries x-ratelimit-*.
"""

from __future__ import annotations

from typing import Any

import httpx

from apisync.apis.github.connection import CONNECTION
from apisync.apis.github.source import GitHubSource
from apisync.apis.github.webhook import GitHubSignature, parse_github
from apisync.http.ratelimit import QuotaSignal
from apisync.http.retry import ApiSignals, server_now
from apisync.registry import ApiSpec, WebhookSpec

SECONDARY_MIN_WAIT_S = 60.0


def _is_rate_limited(response: httpx.Response, reason: str) -> bool:
    if response.status_code != 403:
        return False
    headers = response.headers
    return headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers or "rate limit" in reason.lower()


def _rate_limit_wait(response: httpx.Response, reason: str, now: float) -> float | None:
    headers = response.headers
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - server_now(response, now))
        except ValueError:
            pass
    return SECONDARY_MIN_WAIT_S if "secondary rate limit" in reason.lower() else None


def quota(headers: httpx.Headers) -> QuotaSignal | None:
    """x-ratelimit-remaining / limit / reset (epoch seconds)."""
    try:
        return QuotaSignal(remaining=int(headers["x-ratelimit-remaining"]), limit=int(headers["x-ratelimit-limit"]),
                           reset_at=float(headers["x-ratelimit-reset"]))
    except (KeyError, ValueError):
        return None


def build_source(settings: Any) -> GitHubSource:
    """Extras: `repos` (["owner/name", ...]; or the older `repo`), `page_size`."""
    repos = settings.extra.get("repos") or [settings.extra.get("repo")]
    if isinstance(repos, str):
        repos = [repos]
    if not repos or not all(repos):
        raise ValueError("the github connection needs extra {\"repos\": [\"owner/name\", ...]}")
    page_size = {"page_size": int(settings.extra["page_size"])} if settings.extra.get("page_size") else {}
    return GitHubSource(repos, **page_size)  # every repo once (in any case), in the given order


SPEC = ApiSpec(
    name="github",
    collections=GitHubSource.collections,
    build_source=build_source,
    default_rate_per_s=1.3,  # 5,000 requests an hour, a little under
    signals=ApiSignals(is_rate_limited=_is_rate_limited, rate_limit_wait=_rate_limit_wait, quota=quota),
    webhook=WebhookSpec(GitHubSignature, parse_github, delivery_header="x-github-delivery",
                        kept_headers=("x-hub-signature-256", "x-github-event", "x-github-delivery",
                                      "x-github-hook-id")),
    connection=CONNECTION,
    rules={
        "issue": [{"kind": "transition", "field": "state", "event": "state_changed"}],
        "pull_request": [{"kind": "transition", "field": "state", "event": "state_changed"}],
    },
    # its objects' field names, the ledger states' dictionary: never change them once a ledger holds data
    ledger_fields=(
        "assignee", "assignees", "author_association", "base", "body", "closed_at", "comments", "comments_url",
        "created_at", "description", "diff_url", "draft", "head", "html_url", "id", "issue_url", "label",
        "labels", "locked", "login", "merge_commit_sha", "merged_at", "milestone", "name", "node_id", "number",
        "patch_url", "ref", "repository_url", "requested_reviewers", "sha", "state", "state_reason", "title",
        "type", "updated_at", "url", "user"
    ),
)
