"""How GitHub objects are keyed and shaped as records, the same on every path (polls, webhooks, re-fetches).

Issues and pull requests are `<repository id>#<number>`: numbers are unique only per repository, and the
repository id survives renames and transfers while its name does not (see `source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RE_KEYED = ("re-keyed: GitHub issues and pull requests are keyed by repository id, and this key names the "
            "repository by name")
# The fields of GitHub's `pull-request-simple`: what GET /pulls lists
# (https://docs.github.com/en/rest/pulls/pulls#list-pull-requests). GET /pulls/{number} adds `merged`,
# `mergeable`, `comments`, `additions`, ... (`pull-request`, https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request)
# and a `pull_request` delivery carries that full object and more (`pull-request-webhook`,
# https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request). A poll can only list, and a
# GET per PR would cost one request each, so every path keeps the list's fields: a PR seen by a poll, then by
# a webhook or a re-fetch, is the same record, not a change.
PULL_REQUEST_SIMPLE = frozenset((
    "url", "id", "node_id", "html_url", "diff_url", "patch_url", "issue_url", "commits_url", "review_comments_url",
    "review_comment_url", "comments_url", "statuses_url", "number", "state", "locked", "title", "user", "body",
    "labels", "milestone", "active_lock_reason", "created_at", "updated_at", "closed_at", "merged_at",
    "merge_commit_sha", "assignee", "assignees", "requested_reviewers", "requested_teams", "head", "base",
    "_links", "author_association", "auto_merge", "stack", "draft"))


@dataclass(frozen=True, slots=True)
class Repository:
    """One configured repository as GitHub names it now: its stable id and its current full name."""

    id: int
    full_name: str


def record_id(repository_id: int, number: Any) -> str:
    """`<repository id>#<number>`: the record id of an issue or pull request, the same on every path."""
    return f"{int(repository_id)}#{int(number)}"


def record_data(collection: str, data: Any) -> Any:
    """An object as its record holds it, whichever path observed it: a pull request keeps `pull-request-simple`'s
    fields (see PULL_REQUEST_SIMPLE); any other object stays as GitHub sent it."""
    if collection != "pull_request" or not isinstance(data, dict):
        return data
    return {name: value for name, value in data.items() if name in PULL_REQUEST_SIMPLE}


def split_id(object_id: str) -> tuple[int, int]:
    """`<repository id>#<number>` -> (repository id, number)."""
    repository, _, number = object_id.rpartition("#")
    if not repository.isdigit() or not number.isdigit():
        raise ValueError(f"github issue/PR id must look like <repository id>#<number>, got {object_id!r}")
    return int(repository), int(number)


def is_name_keyed(object_id: str) -> bool:
    """Whether an id names its repository (`owner/repo#n`), as keys written before repository ids did."""
    repository, _, number = object_id.rpartition("#")
    return repository.count("/") == 1 and number.isdigit()


def unique_repos(repos: Sequence[str]) -> list[str]:
    """Each repository once, in the given order; names that differ only in case are one repository."""
    seen: dict[str, str] = {}
    for repo in repos:
        seen.setdefault(repo.lower(), repo)
    return list(seen.values())
