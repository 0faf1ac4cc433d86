"""GitHub dataset for apisync/demo: issues and pull requests (one number space) and comments."""
from __future__ import annotations

import copy
from typing import Any

import orjson

from .ids import uuid_from
from .model import ApiModel, Mutation, WebhookMessage
from .store import Collection
from .timefmt import github_time

OWNER, REPO = "apisync", "demo"
API = f"https://api.github.com/repos/{OWNER}/{REPO}"
HTML = f"https://github.com/{OWNER}/{REPO}"
REPOSITORY = {"id": 7000001, "node_id": "R_kgDOapisync", "name": REPO, "full_name": f"{OWNER}/{REPO}",
              "private": False, "owner": {"login": OWNER, "id": 9000001, "type": "Organization"},
              "html_url": HTML, "url": API, "default_branch": "main"}
LOGINS = ("octocat", "hubot", "monalisa", "defunkt", "mojombo", "pjhyett")


def _key(oid: str, data: dict, field: str) -> tuple:
    # ISO strings of one fixed format sort like the instants they name.
    return (data[field], int(oid), oid)


class GitHubModel(ApiModel):
    """Issues (PRs included, as /issues shows them), PR views (/pulls) and issue comments."""

    api = "github"
    collections = ("issue", "pull_request", "issue_comment")
    # GitHub cannot delete pull requests; we only delete issues that have no comments.
    mutable = {"create": collections, "update": collections, "delete": ("issue", "issue_comment")}

    def __init__(self, clock, seed: int) -> None:
        super().__init__(clock, seed)
        indexes = {"created": lambda o, d: _key(o, d, "created_at"),
                   "updated": lambda o, d: _key(o, d, "updated_at")}
        self.issues = Collection("issue", indexes)  # issue views of issues and PRs, by number
        self.pulls = Collection("pull_request", indexes)  # PR views, by number
        self.comments = Collection("issue_comment", indexes)
        self.next_number = 1
        self.next_comment = 1

    def seed(self, count: int) -> None:
        """`count` issues, PRs and comments on one timeline (comments follow their issue)."""
        order = [c for c in self.collections for _ in range(count)]
        self.rng.shuffle(order)
        if count:
            order.remove("issue")
            order.insert(0, "issue")
        for when, collection in zip(self.seed_times(len(order)), order, strict=True):
            self._create(collection, when, seeded=True)
        self.outbox.clear()

    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Create, update or delete one object now and queue its webhook."""
        now = self.clock.now_s()
        oid = getattr(self, f"_{kind}")(collection, now)
        if oid is None:
            return None
        return Mutation(self.api, collection, oid, kind, now * 1000)

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Delete a named issue or comment."""
        if collection == "issue" and oid in self.issues.entries and not self._is_pr(oid):
            self._remove_issue(oid, self.clock.now_s())
        elif collection == "issue_comment" and oid in self.comments.entries:
            self._remove_comment(oid, self.clock.now_s())
        else:
            return None
        return Mutation(self.api, collection, oid, "delete", self.clock.now_s() * 1000)

    def _is_pr(self, number: str) -> bool:
        return number in self.pulls.entries or number in self.pulls.deleted

    # ---- create --------------------------------------------------------------------------
    def _create(self, collection: str, when: int, seeded: bool = False) -> str | None:
        if collection == "issue_comment":
            return self._create_comment(when)
        number = str(self.next_number)
        self.next_number += 1
        issue = self._issue_view(int(number), when, collection == "pull_request")
        if seeded and self.rng.random() < 0.3:
            issue.update(state="closed", closed_at=issue["created_at"], state_reason="completed")
        self.issues.put(number, issue, when * 1000)
        if collection == "pull_request":
            self.pulls.put(number, self._pull_view(issue), when * 1000)
        self._hook(collection, "opened", number)
        return number

    def _issue_view(self, number: int, when: int, is_pr: bool) -> dict[str, Any]:
        login = self.rng.choice(LOGINS)
        stamp = github_time(when)
        issue = {"url": f"{API}/issues/{number}", "repository_url": API, "html_url": f"{HTML}/issues/{number}",
                 "comments_url": f"{API}/issues/{number}/comments", "id": 1_500_000 + number,
                 "node_id": f"I_kwDOapi{number:06d}", "number": number, "title": self.phrase(4),
                 "user": {"login": login, "id": 100 + LOGINS.index(login), "type": "User"},
                 "labels": [], "state": "open", "state_reason": None, "locked": False, "assignee": None,
                 "assignees": [], "milestone": None, "comments": 0, "created_at": stamp,
                 "updated_at": stamp, "closed_at": None, "author_association": "MEMBER",
                 "body": self.phrase(8)}
        if is_pr:
            issue["html_url"] = f"{HTML}/pull/{number}"
            issue["pull_request"] = {"url": f"{API}/pulls/{number}", "html_url": f"{HTML}/pull/{number}",
                                     "diff_url": f"{HTML}/pull/{number}.diff",
                                     "patch_url": f"{HTML}/pull/{number}.patch", "merged_at": None}
        return issue

    def _pull_view(self, issue: dict[str, Any], merged_at: str | None = None) -> dict[str, Any]:
        """The /pulls shape of a PR, kept in step with its issue view."""
        number = issue["number"]
        sha = "%040x" % (number * 2654435761 % (1 << 160))
        return {"url": f"{API}/pulls/{number}", "id": 3_500_000 + number, "node_id": f"PR_kwDOapi{number:06d}",
                "html_url": f"{HTML}/pull/{number}", "diff_url": f"{HTML}/pull/{number}.diff",
                "patch_url": f"{HTML}/pull/{number}.patch", "issue_url": f"{API}/issues/{number}",
                "number": number, "state": issue["state"], "locked": False, "title": issue["title"],
                "user": issue["user"], "body": issue["body"], "created_at": issue["created_at"],
                "updated_at": issue["updated_at"], "closed_at": issue["closed_at"], "merged_at": merged_at,
                "merge_commit_sha": sha if merged_at else None, "draft": False,
                "head": {"label": f"{OWNER}:feature-{number}", "ref": f"feature-{number}", "sha": sha},
                "base": {"label": f"{OWNER}:main", "ref": "main", "sha": "0" * 40},
                "author_association": issue["author_association"]}

    def _create_comment(self, when: int) -> str | None:
        if not self.issues.entries:
            return None
        number = self.rng.choice(list(self.issues.entries))
        cid = str(2_000_000_000 + self.next_comment)
        self.next_comment += 1
        login = self.rng.choice(LOGINS)
        stamp = github_time(when)
        comment = {"url": f"{API}/issues/comments/{cid}", "html_url": f"{HTML}/issues/{number}#issuecomment-{cid}",
                   "issue_url": f"{API}/issues/{number}", "id": int(cid), "node_id": f"IC_kwDOapi{cid}",
                   "user": {"login": login, "id": 100 + LOGINS.index(login), "type": "User"},
                   "created_at": stamp, "updated_at": stamp, "body": self.phrase(6),
                   "author_association": "CONTRIBUTOR"}
        self.comments.put(cid, comment, when * 1000)
        self._touch_issue(number, when, +1)
        self._hook("issue_comment", "created", cid)
        return cid

    def _touch_issue(self, number: str, when: int, delta: int) -> None:
        """A comment changes its issue's `comments` count and `updated_at`, as on GitHub."""
        issue = copy.deepcopy(self.issues.entries[number].data)
        issue["comments"] = max(0, issue["comments"] + delta)
        issue["updated_at"] = github_time(when)
        self._save_issue(number, issue, when)

    def _save_issue(self, number: str, issue: dict, when: int) -> None:
        self.issues.put(number, issue, when * 1000)
        if number in self.pulls.entries:
            merged = issue["pull_request"]["merged_at"]
            self.pulls.put(number, self._pull_view(issue, merged), when * 1000)

    # ---- update --------------------------------------------------------------------------
    def _update(self, collection: str, when: int) -> str | None:
        if collection == "issue_comment":
            return self._update_comment(when)
        pool = [n for n in self.issues.entries if self._is_pr(n) == (collection == "pull_request")]
        if not pool:
            return None
        number = self.rng.choice(pool)
        issue = copy.deepcopy(self.issues.entries[number].data)
        action = self._change_issue(issue, when, collection == "pull_request")
        self._save_issue(number, issue, when)
        self._hook(collection, action, number)
        return number

    def _change_issue(self, issue: dict, when: int, is_pr: bool) -> str:
        stamp = github_time(when)
        issue["updated_at"] = stamp
        roll = self.rng.random()
        if issue["state"] == "open" and roll < 0.35:
            issue.update(state="closed", closed_at=stamp, state_reason="completed")
            if is_pr and self.rng.random() < 0.6:
                issue["pull_request"]["merged_at"] = stamp
            return "closed"
        if issue["state"] == "closed" and roll < 0.2 and not (is_pr and issue["pull_request"]["merged_at"]):
            issue.update(state="open", closed_at=None, state_reason="reopened")
            return "reopened"
        issue["title"] = self.phrase(4)
        return "edited"

    def _update_comment(self, when: int) -> str | None:
        if not self.comments.entries:
            return None
        cid = self.rng.choice(list(self.comments.entries))
        comment = copy.deepcopy(self.comments.entries[cid].data)
        comment.update(body=self.phrase(6), updated_at=github_time(when))
        self.comments.put(cid, comment, when * 1000)
        self._hook("issue_comment", "edited", cid)
        return cid

    # ---- delete --------------------------------------------------------------------------
    def _delete(self, collection: str, when: int) -> str | None:
        if collection == "issue_comment":
            pool = list(self.comments.entries)
        else:
            pool = [n for n, e in self.issues.entries.items() if not self._is_pr(n) and e.data["comments"] == 0]
        if collection not in self.mutable["delete"] or not pool:
            return None
        oid = self.rng.choice(pool)
        (self._remove_comment if collection == "issue_comment" else self._remove_issue)(oid, when)
        return oid

    def _remove_issue(self, number: str, when: int) -> None:
        self._hook("issue", "deleted", number)
        self.issues.delete(number, when * 1000)

    def _remove_comment(self, cid: str, when: int) -> None:
        self._hook("issue_comment", "deleted", cid)
        comment = self.comments.delete(cid, when * 1000)
        number = comment.data["issue_url"].rsplit("/", 1)[1]
        if number in self.issues.entries:
            self._touch_issue(number, when, -1)

    # ---- webhooks and truth --------------------------------------------------------------
    def _hook(self, collection: str, action: str, oid: str) -> None:
        """Queue the webhook GitHub would send for this change."""
        if collection == "issue_comment":
            comment = self.comments.entries[oid].data
            number = comment["issue_url"].rsplit("/", 1)[1]
            issue = self.issues.entries.get(number)
            payload = {"action": action, "issue": issue.data if issue else None, "comment": comment}
            event = "issue_comment"
        elif collection == "pull_request":
            payload = {"action": action, "number": int(oid), "pull_request": self.pulls.entries[oid].data}
            event = "pull_request"
        else:
            payload = {"action": action, "issue": self.issues.entries[oid].data}
            event = "issues"
        payload.update(repository=REPOSITORY, sender={"login": "octocat", "id": 100, "type": "User"})
        self.outbox.append(WebhookMessage("github", orjson.dumps(payload), event, uuid_from(self.rng)))

    def truth(self) -> dict[str, Any]:
        """Version = updated_at in ms; issues exclude PRs, which appear under pull_request."""
        issues = {n: {"version": e.version, "data": e.data} for n, e in self.issues.entries.items()
                  if not self._is_pr(n)}
        pulls = {n: {"version": e.version, "data": e.data} for n, e in self.pulls.entries.items()}
        comments = {c: {"version": e.version, "data": e.data} for c, e in self.comments.entries.items()}
        return {"objects": {"issue": issues, "pull_request": pulls, "issue_comment": comments},
                "deleted": {"issue": list(self.issues.deleted), "pull_request": [],
                            "issue_comment": list(self.comments.deleted)}}
