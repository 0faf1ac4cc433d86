"""GitHub object shapes: repositories, issues (and the issue facet of PRs), pull requests, comments.

Ids: an issue or PR is stored under `<repository id>#<number>` (numbers are unique only per repository,
https://docs.github.com/en/rest/issues/issues), the address GitHub itself keeps for it across renames:
a renamed repository's old paths redirect to `/repositories/<id>/...`
(https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects),
and names are matched without regard to case, so only the id is stable. A comment is stored under its
`id` (unique across GitHub).
"""
from __future__ import annotations

from typing import Any

from .timefmt import github_time

API_ROOT = "https://api.github.com"
WEB_ROOT = "https://github.com"
# The repositories served by default (several, as an organisation has): name -> repository id.
REPOSITORIES = {"apisync/demo": 7000001, "apisync/tools": 7000002}
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
    return next(name for name, rid in REPOSITORIES.items() if rid == repo_id)


def repository(name: str, repo_id: int) -> dict[str, Any]:
    """GET /repos/{owner}/{repo} (the fields apisync and webhooks use)."""
    owner = name.split("/")[0]
    return {"id": repo_id, "node_id": f"R_kgDO{repo_id}", "name": name.split("/")[1], "full_name": name,
            "private": False, "owner": {"login": owner, "id": 9000001, "type": "Organization"},
            "html_url": f"{WEB_ROOT}/{name}", "url": f"{API_ROOT}/repos/{name}", "default_branch": "main"}


def user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 100 + LOGINS.index(login), "type": "User"}


def issue_view(repo: str, number: int, when: int, is_pr: bool, login: str, title: str, body: str) -> dict[str, Any]:
    """An issue as /issues shows it; a PR's issue facet carries `pull_request`."""
    api, html, stamp = f"{API_ROOT}/repos/{repo}", f"{WEB_ROOT}/{repo}", github_time(when)
    repo_id = REPOSITORIES.get(repo, 7000000)
    issue = {"url": f"{api}/issues/{number}", "repository_url": api, "html_url": f"{html}/issues/{number}",
             "comments_url": f"{api}/issues/{number}/comments", "id": repo_id * 1000 + number,
             "node_id": f"I_kwDO{repo_id}{number:06d}", "number": number, "title": title, "user": user(login),
             "labels": [], "state": "open", "state_reason": None, "locked": False, "assignee": None,
             "assignees": [], "milestone": None, "comments": 0, "created_at": stamp,
             "updated_at": stamp, "closed_at": None, "author_association": "MEMBER", "body": body}
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
    owner = repo.split("/")[0]
    return {"url": f"{api}/pulls/{number}", "id": repo_id * 10000 + number, "node_id": f"PR_kwDO{repo_id}{number:06d}",
            "html_url": f"{html}/pull/{number}", "diff_url": f"{html}/pull/{number}.diff",
            "patch_url": f"{html}/pull/{number}.patch", "issue_url": f"{api}/issues/{number}",
            "number": number, "state": issue["state"], "locked": False, "title": issue["title"],
            "user": issue["user"], "body": issue["body"], "created_at": issue["created_at"],
            "updated_at": max(issue["updated_at"], extra.get("updated_at", "")), "closed_at": issue["closed_at"],
            "merged_at": merged_at, "merge_commit_sha": sha if merged_at else None, "draft": False,
            "requested_reviewers": extra.get("reviewers", []),
            "head": {"label": f"{owner}:feature-{number}", "ref": f"feature-{number}", "sha": sha},
            "base": {"label": f"{owner}:main", "ref": "main", "sha": "0" * 40},
            "author_association": issue["author_association"]}


def comment_view(repo: str, number: int, cid: str, when: int, login: str, body: str) -> dict[str, Any]:
    api, html, stamp = f"{API_ROOT}/repos/{repo}", f"{WEB_ROOT}/{repo}", github_time(when)
    return {"url": f"{api}/issues/comments/{cid}", "html_url": f"{html}/issues/{number}#issuecomment-{cid}",
            "issue_url": f"{api}/issues/{number}", "id": int(cid), "node_id": f"IC_kwDOapi{cid}",
            "user": user(login), "created_at": stamp, "updated_at": stamp, "body": body,
            "author_association": "CONTRIBUTOR"}


def repo_of_comment(comment: dict[str, Any]) -> tuple[str, int]:
    """(owner/repo, issue number) a comment belongs to, from its issue_url."""
    path = comment["issue_url"].split("/repos/", 1)[1]
    repo, _, number = path.rpartition("/issues/")
    return repo, int(number)
