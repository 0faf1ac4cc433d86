"""GitHub object shapes: repositories, issues (and the issue facet of PRs), pull requests, comments.

Ids: an issue or PR is stored under `<repository id>#<number>` (numbers are unique only per repository,
https://docs.github.com/en/rest/issues/issues), the address GitHub itself keeps for it across renames:
a renamed repository's old paths redirect to `/repositories/<id>/...`
(https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects),
and names are matched without regard to case, so only the id is stable. A comment is stored under its
`id` (unique across GitHub).
"""
from __future__ import annotations

from functools import cache
from typing import Any

from . import github_urls as urls
from .timefmt import github_time

API_ROOT = "https://api.github.com"
WEB_ROOT = "https://github.com"
# The repositories served by default (several, as an organisation has): name -> repository id.
REPOSITORIES = {"apisync/demo": 7000001, "apisync/tools": 7000002}
_ORIGINAL_NAMES = {rid: name for name, rid in REPOSITORIES.items()}
LOGINS = ("octocat", "hubot", "monalisa", "defunkt", "mojombo", "pjhyett")


def key(repo: str, number: int | str) -> str:
    """The storage (and truth) id of an issue or PR of a served repository (`repo`: its original name)."""
    return f"{REPOSITORIES[repo]}#{number}"


def split(oid: str) -> tuple[str, int]:
    """`7000001#12` -> ("apisync/demo", 12): the repository's original name and the number."""
    repo_id, _, number = oid.rpartition("#")
    return original_name(int(repo_id)), int(number)


def original_name(repo_id: int) -> str:
    """The name a served repository had at creation, from its id."""
    return _ORIGINAL_NAMES[repo_id]


def repository(name: str, repo_id: int) -> dict[str, Any]:
    """GET /repos/{owner}/{repo}: a `full-repository` (https://docs.github.com/en/rest/repos/repos#get-a-repository)."""
    # `has_discussions` is required here and optional in `repository`, where one of GitHub's webhook schemas
    # (pull_request_review.edited's head and base) does not declare it: it goes only where it is required.
    return {**repository_in_pull(name, repo_id), "subscribers_count": 0, "network_count": 0, "has_discussions": False}


@cache
def repository_in_pull(name: str, repo_id: int) -> dict[str, Any]:
    """A `repository` (not a `full-repository`), as a pull request's head and base and a transfer's
    `new_repository` carry it.

    One object per repository, shared by every PR that embeds it (never mutated): seeding builds thousands."""
    owner = name.split("/")[0]
    return {"id": repo_id, "node_id": f"R_kgDO{repo_id}", "name": name.split("/")[1], "full_name": name,
            "private": False, "owner": urls.account(owner, 9000001, "Organization"),
            "html_url": f"{WEB_ROOT}/{name}", "url": f"{API_ROOT}/repos/{name}", "default_branch": "main",
            **urls.repository_fields(name)}


@cache
def user(login: str) -> dict[str, Any]:
    """A `simple-user`, one object per login shared by everything it authored (never mutated)."""
    return urls.account(login, 100 + LOGINS.index(login))


def issue_view(repo: str, number: int, when: int, is_pr: bool, login: str, title: str, body: str) -> dict[str, Any]:
    """An issue as /issues shows it; a PR's issue facet carries `pull_request`."""
    api, html, stamp = f"{API_ROOT}/repos/{repo}", f"{WEB_ROOT}/{repo}", github_time(when)
    repo_id = REPOSITORIES.get(repo, 7000000)
    issue = {"url": f"{api}/issues/{number}", "repository_url": api, "html_url": f"{html}/issues/{number}",
             "labels_url": f"{api}/issues/{number}/labels{{/name}}", "events_url": f"{api}/issues/{number}/events",
             "comments_url": f"{api}/issues/{number}/comments", "id": repo_id * 1000 + number,
             "node_id": f"I_kwDO{repo_id}{number:06d}", "number": number, "title": title, "user": user(login),
             "labels": [], "state": "open", "state_reason": None, "locked": False, "assignee": None,
             "assignees": [], "milestone": None, "comments": 0, "created_at": stamp,
             "updated_at": stamp, "closed_at": None, "author_association": "MEMBER", "body": body,
             # GitHub's webhook `issue` requires both; the REST `issue` carries them too.
             "active_lock_reason": None, "reactions": urls.reactions(f"{api}/issues/{number}")}
    if is_pr:
        issue["html_url"] = f"{html}/pull/{number}"
        issue["pull_request"] = {"url": f"{api}/pulls/{number}", "html_url": f"{html}/pull/{number}",
                                 "diff_url": f"{html}/pull/{number}.diff",
                                 "patch_url": f"{html}/pull/{number}.patch", "merged_at": None}
    return issue


def pull_view(repo: str, issue: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The /pulls shape of a PR: its issue facet plus what only a PR has (head sha, merge, PR-only stamps).

    `extra["updated_at"]` is set by PR-only changes (reviews, pushed commits): they bump the PR's
    `updated_at` but not its issue's.
    """
    number, api, html = issue["number"], f"{API_ROOT}/repos/{repo}", f"{WEB_ROOT}/{repo}"
    repo_id = REPOSITORIES.get(repo, 7000000)
    merged_at = issue["pull_request"]["merged_at"]
    sha = extra.get("sha") or "%040x" % (number * 2654435761 % (1 << 160))
    owner, base_sha = repo.split("/")[0], "0" * 40
    in_pull = repository_in_pull(repo, repo_id)
    return {"url": f"{api}/pulls/{number}", "id": repo_id * 10000 + number, "node_id": f"PR_kwDO{repo_id}{number:06d}",
            "html_url": f"{html}/pull/{number}", "diff_url": f"{html}/pull/{number}.diff",
            "patch_url": f"{html}/pull/{number}.patch", "issue_url": f"{api}/issues/{number}",
            **urls.pull_urls(repo, number, sha),
            "number": number, "state": issue["state"], "locked": False, "title": issue["title"],
            "user": issue["user"], "body": issue["body"], "labels": [], "milestone": None,
            "active_lock_reason": None, "created_at": issue["created_at"],
            "updated_at": max(issue["updated_at"], extra.get("updated_at", "")), "closed_at": issue["closed_at"],
            "merged_at": merged_at, "merge_commit_sha": sha if merged_at else None, "assignee": None,
            "assignees": [], "requested_reviewers": extra.get("reviewers", []), "requested_teams": [],
            "head": {"label": f"{owner}:feature-{number}", "ref": f"feature-{number}", "sha": sha,
                     "user": issue["user"], "repo": in_pull},
            "base": {"label": f"{owner}:main", "ref": "main", "sha": base_sha, "user": in_pull["owner"],
                     "repo": in_pull},
            "_links": urls.pull_links(repo, number, sha), "author_association": issue["author_association"],
            "auto_merge": None, "draft": False,
            # Only GET /pulls/{number} carries these (https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request);
            # `pull_simple` drops them for the list.
            "merged": merged_at is not None, "mergeable": None if merged_at else True, "rebaseable": None,
            "mergeable_state": "unknown" if merged_at else "clean", "merged_by": issue["user"] if merged_at else None,
            "comments": issue["comments"], "review_comments": 0, "maintainer_can_modify": False, "commits": 1,
            "additions": 1, "deletions": 0, "changed_files": 1}


# What GET /pulls/{number} adds to a list item (`pull-request` minus `pull-request-simple`).
PULL_ONLY = ("merged", "mergeable", "rebaseable", "mergeable_state", "merged_by", "comments", "review_comments",
             "maintainer_can_modify", "commits", "additions", "deletions", "changed_files")


def pull_simple(pull: dict[str, Any]) -> dict[str, Any]:
    """A pull request as GET /pulls lists it (https://docs.github.com/en/rest/pulls/pulls#list-pull-requests):
    also the shape of a pull_request record, whatever path observed it (see `apisync.apis.github.source`)."""
    return {name: value for name, value in pull.items() if name not in PULL_ONLY}


def comment_view(repo: str, number: int, cid: str, when: int, login: str, body: str) -> dict[str, Any]:
    """An issue comment as /issues/comments shows it."""
    api, html, stamp = f"{API_ROOT}/repos/{repo}", f"{WEB_ROOT}/{repo}", github_time(when)
    return {"url": f"{api}/issues/comments/{cid}", "html_url": f"{html}/issues/{number}#issuecomment-{cid}",
            "issue_url": f"{api}/issues/{number}", "id": int(cid), "node_id": f"IC_kwDOapi{cid}",
            "user": user(login), "created_at": stamp, "updated_at": stamp, "body": body,
            "author_association": "CONTRIBUTOR", "performed_via_github_app": None,
            "reactions": urls.reactions(f"{api}/issues/comments/{cid}")}


def repo_of_comment(comment: dict[str, Any]) -> tuple[str, int]:
    """(owner/repo, issue number) a comment belongs to, from its issue_url."""
    path = comment["issue_url"].split("/repos/", 1)[1]
    repo, _, number = path.rpartition("/issues/")
    return repo, int(number)


# Pull request reviews (https://docs.github.com/en/rest/pulls/reviews) are stored under
# `<repository id>#<number>/<review id>`: a review is addressed only through its PR
# (`/pulls/{number}/reviews/{review_id}`), so its record id carries the number. Review comments
# (https://docs.github.com/en/rest/pulls/comments) are stored under their `id` (unique across GitHub).
def review_key(repo: str, number: int, review_id: int) -> str:
    """The storage (and truth) id of a review of a served repository's PR."""
    return f"{key(repo, number)}/{review_id}"


def split_review(oid: str) -> tuple[str, int, int]:
    """`7000001#12/3000000001` -> ("apisync/demo", 12, 3000000001)."""
    pull, _, review_id = oid.partition("/")
    repo, number = split(pull)
    return repo, number, int(review_id)


def review_view(repo: str, number: int, review_id: int, when: int, login: str, state: str, body: str,
                commit_id: str) -> dict[str, Any]:
    """A submitted review as GET /pulls/{number}/reviews shows it (`state` in REST's upper case)."""
    html_url = f"{WEB_ROOT}/{repo}/pull/{number}#pullrequestreview-{review_id}"
    pull_url = f"{API_ROOT}/repos/{repo}/pulls/{number}"
    return {"id": review_id, "node_id": f"PRR_kwDO{review_id}", "user": user(login), "body": body, "state": state,
            "html_url": html_url, "pull_request_url": pull_url, "author_association": "MEMBER",
            "_links": {"html": {"href": html_url}, "pull_request": {"href": pull_url}},
            "submitted_at": github_time(when), "commit_id": commit_id}


def webhook_review(review: dict[str, Any]) -> dict[str, Any]:
    """A review as `pull_request_review` deliveries carry it: REST's fields, `state` in lower case
    (https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request_review: "approved",
    "changes_requested", "commented", "dismissed")."""
    return {**review, "state": review["state"].lower()}


def review_comment_view(repo: str, number: int, cid: int, review_id: int, when: int, login: str, body: str,
                        commit_id: str, line: int, in_reply_to: int | None = None) -> dict[str, Any]:
    """A review comment as GET /pulls/comments shows it; `in_reply_to_id` only on a reply, as on GitHub."""
    url, pull_url = f"{API_ROOT}/repos/{repo}/pulls/comments/{cid}", f"{API_ROOT}/repos/{repo}/pulls/{number}"
    html_url, stamp = f"{WEB_ROOT}/{repo}/pull/{number}#discussion_r{cid}", github_time(when)
    comment = {"url": url, "pull_request_review_id": review_id, "id": cid, "node_id": f"PRRC_kwDO{cid}",
               "diff_hunk": f"@@ -{line},3 +{line},4 @@ def sync():", "path": "include/apisync/sync.py",
               "position": 4, "original_position": 4, "commit_id": commit_id, "original_commit_id": commit_id,
               "user": user(login), "body": body, "created_at": stamp, "updated_at": stamp, "html_url": html_url,
               "pull_request_url": pull_url, "author_association": "MEMBER",
               "_links": {"self": {"href": url}, "html": {"href": html_url}, "pull_request": {"href": pull_url}},
               "start_line": None, "original_start_line": None, "start_side": None, "line": line,
               "original_line": line, "side": "RIGHT", "subject_type": "line", "reactions": urls.reactions(url)}
    if in_reply_to is not None:
        comment["in_reply_to_id"] = in_reply_to
    return comment


def pull_of_review_comment(comment: dict[str, Any]) -> tuple[str, int]:
    """(owner/repo, PR number) a review comment belongs to, from its pull_request_url."""
    repo, _, number = comment["pull_request_url"].split("/repos/", 1)[1].rpartition("/pulls/")
    return repo, int(number)
