"""GitHub dataset: issues and pull requests (one number space per repository) and comments, in several
repositories (`apisync/demo`, `apisync/tools`), with the behaviours connectors trip over:

- PR-only changes (a review requested, a commit pushed) bump the PR's `updated_at`, not its issue's
  (https://docs.github.com/en/rest/pulls/pulls: the PR object; /issues shows only the issue facet).
- Issue transfers (https://docs.github.com/en/issues/tracking-your-work-with-issues/administering-issues/
  transferring-an-issue-to-another-repository): the issue leaves its repository and gets a new number in
  the target; the old URL answers 301 (https://docs.github.com/en/rest/using-the-rest-api/
  troubleshooting-the-rest-api#moved-permanently) and the old repository gets an `issues` webhook with
  action `transferred` (https://docs.github.com/en/webhooks/webhook-events-and-payloads#issues).
- Repository renames: every old path answers 301 to `/repositories/<id>/...` (see `github.py`); webhooks
  sent after a rename carry the new `repository.full_name` and the same `repository.id`
  (https://docs.github.com/en/webhooks/webhook-events-and-payloads: every payload's `repository` object).
- A repository can stop answering at any time (`refuse`): deleted or made private (404), an organisation
  enforcing SAML SSO or an app installation that lost access (403), blocked for legal reasons (451).
- Pull request reviews and review comments: see `github_reviews`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import orjson

from . import github_views as views
from .github_reviews import COLLECTIONS as REVIEW_COLLECTIONS
from .github_reviews import ReviewBook
from .ids import uuid_from
from .model import ApiModel, Mutation, WebhookMessage
from .store import Collection
from .timefmt import github_time, parse_iso

REPOS = tuple(views.REPOSITORIES)


@dataclass(slots=True)
class Refusal:
    """A repository that stops answering (deleted, made private, SSO enforced, app uninstalled)."""

    status: int
    after: int  # requests it still answers first


def _sort_key(oid: str, data: dict, field: str) -> tuple:
    # ISO strings of one fixed format sort like the instants they name; ties by repository, then number.
    if "#" in oid:
        repo, number = views.split(oid)
        return (data[field], repo, number, oid)
    return (data[field], "", int(oid), oid)


class GitHubModel(ApiModel):
    """Issues (PRs included, as /issues shows them), PR views (/pulls), issue comments, reviews and review
    comments."""

    api = "github"
    issue_collections = ("issue", "pull_request", "issue_comment")
    collections = issue_collections + REVIEW_COLLECTIONS
    # GitHub cannot delete pull requests or submitted reviews; we only delete or transfer issues that have no
    # comments.
    mutable = {"create": collections, "update": collections,
               "delete": ("issue", "issue_comment", "pull_request_review_comment"), "transfer": ("issue",)}

    def __init__(self, clock, seed: int) -> None:
        super().__init__(clock, seed)
        indexes = {"created": lambda o, d: _sort_key(o, d, "created_at"),
                   "updated": lambda o, d: _sort_key(o, d, "updated_at")}
        self.issues = Collection("issue", indexes)  # issue views of issues and PRs, by repo#number
        self.pulls = Collection("pull_request", indexes)  # PR views, by repo#number
        self.comments = Collection("issue_comment", indexes)
        self.pr_extra: dict[str, dict[str, Any]] = {}  # what only the PR view has (sha, PR-only stamps)
        self.next_number = {repo: 1 for repo in REPOS}
        self.next_comment = 1
        self.full_names = {rid: name for name, rid in views.REPOSITORIES.items()}  # id -> current full name
        self.renamed: dict[str, int] = {}  # old full name, lower case -> repository id (answers 301)
        self.refusals: dict[str, Refusal] = {}  # original name -> how the repository refuses requests
        self.transferred: dict[str, str] = {}  # old repo#number -> new repo#number (answers 301)
        self.book = ReviewBook(self, seed)  # reviews and review comments
        self.seeding = False

    def seed(self, count: int) -> None:
        """`count` issues, PRs and comments on one timeline (comments follow their issue), then `count`
        reviews of those PRs."""
        order = [c for c in self.issue_collections for _ in range(count)]
        self.rng.shuffle(order)
        if count:
            order.remove("issue")
            order.insert(0, "issue")
        self.seeding = True  # history: no deliveries are built for it (GitHub sent them long ago)
        try:
            issues: list[str] = []  # every issue and PR so far, in creation order (seeding deletes none)
            for when, collection in zip(self.seed_times(len(order)), order, strict=True):
                if collection == "issue_comment":
                    self._create_comment(when, issues)
                else:
                    issues.append(self._create(collection, when, seeded=True))
            self.book.seed(count)
        finally:
            self.seeding = False
        self.outbox.clear()

    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Create, update, delete or transfer one object now and queue its webhook."""
        now = self.clock.now_s()
        if collection in REVIEW_COLLECTIONS:
            oid = self.book.mutate(kind, collection, now)
        else:
            oid = getattr(self, f"_{kind}")(collection, now)
        if oid is None:
            return None
        version = self.book.reviews.entries[oid].version if collection == "pull_request_review" else now * 1000
        return Mutation(self.api, collection, oid, kind, version)  # a review keeps its submitted_at

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Delete a named issue or comment."""
        if collection == "issue" and oid in self.issues.entries and not self._is_pr(oid):
            self._remove_issue(oid, self.clock.now_s())
        elif collection == "issue_comment" and oid in self.comments.entries:
            self._remove_comment(oid, self.clock.now_s())
        elif not (collection == "pull_request_review_comment" and self.book.delete_comment(oid, self.clock.now_s())):
            return None
        return Mutation(self.api, collection, oid, "delete", self.clock.now_s() * 1000)

    def repo_by_id(self, repo_id: int) -> str | None:
        """The storage name (the name at creation) of a repository id."""
        return next((name for name, rid in views.REPOSITORIES.items() if rid == repo_id), None)

    def repo_by_name(self, name: str) -> str | None:
        """The storage name of the repository now called `name`, in any case: GitHub matches owner and
        repository names without regard to case (https://docs.github.com/en/rest/repos/repos#get-a-repository:
        "The name is not case sensitive")."""
        rid = next((rid for rid, full in self.full_names.items() if full.lower() == name.lower()), None)
        return None if rid is None else self.repo_by_id(rid)

    def current_name(self, repo: str) -> str:
        """The full name a served repository has now (its case as GitHub shows it)."""
        return self.full_names[views.REPOSITORIES[repo]]

    def rename(self, repo: str, new_name: str) -> None:
        """Rename a repository: the old name answers 301 from now on (a name taken back stops redirecting)."""
        rid = views.REPOSITORIES[repo]
        self.renamed[self.current_name(repo).lower()] = rid
        self.renamed.pop(new_name.lower(), None)
        self.full_names[rid] = new_name

    def refuse(self, repo: str, status: int | None, after: int = 0) -> None:
        """From its `after`-th next request on, every request addressed to `repo` answers `status`
        (404, 403 or 451; None: it answers again)."""
        if status is None:
            self.refusals.pop(repo, None)
        else:
            self.refusals[repo] = Refusal(status, after)

    def refusal(self, repo: str) -> int | None:
        """The status a request to `repo` gets now instead of an answer, counting one request."""
        refusal = self.refusals.get(repo)
        if refusal is None:
            return None
        if refusal.after > 0:
            refusal.after -= 1
            return None
        return refusal.status

    def _is_pr(self, oid: str) -> bool:
        return oid in self.pulls.entries or oid in self.pulls.deleted

    # ---- create --------------------------------------------------------------------------
    def _create(self, collection: str, when: int, seeded: bool = False, repo: str | None = None) -> str | None:
        if collection == "issue_comment":
            return self._create_comment(when)
        repo = repo or self.rng.choice(REPOS)
        number = self.next_number[repo]
        self.next_number[repo] += 1
        oid = views.key(repo, number)
        issue = views.issue_view(repo, number, when, collection == "pull_request", self.rng.choice(views.LOGINS),
                                 self.phrase(4), self.phrase(8))
        if seeded and self.rng.random() < 0.3:
            issue.update(state="closed", closed_at=issue["created_at"], state_reason="completed")
        self.issues.put(oid, issue, when * 1000)
        if collection == "pull_request":
            self.pulls.put(oid, views.pull_view(repo, issue, {}), when * 1000)
        self._hook(collection, "opened", oid)
        return oid

    def _create_comment(self, when: int, issues: list[str] | None = None) -> str | None:
        """A comment on a random issue or PR (of `issues` when given: listing every live one costs O(n))."""
        pool = list(self.issues.entries) if issues is None else issues
        if not pool:
            return None
        oid = self.rng.choice(pool)
        repo, number = views.split(oid)
        cid = str(2_000_000_000 + self.next_comment)
        self.next_comment += 1
        comment = views.comment_view(repo, number, cid, when, self.rng.choice(views.LOGINS), self.phrase(6))
        self.comments.put(cid, comment, when * 1000)
        self._touch_issue(oid, when, +1)
        self._hook("issue_comment", "created", cid)
        return cid

    def _touch_issue(self, oid: str, when: int, delta: int) -> None:
        """A comment changes its issue's `comments` count and `updated_at`, as on GitHub."""
        issue = dict(self.issues.entries[oid].data)  # only top-level fields change
        issue["comments"] = max(0, issue["comments"] + delta)
        issue["updated_at"] = github_time(when)
        self._save_issue(oid, issue, when)

    def _save_issue(self, oid: str, issue: dict, when: int) -> None:
        self.issues.put(oid, issue, when * 1000)
        if oid in self.pulls.entries:
            self._save_pull(oid, when)

    def bump_pull(self, oid: str, when: int) -> None:
        """A change on the PR's timeline (a review submitted or dismissed): its `updated_at` moves, its issue's not."""
        extra = self.pr_extra.setdefault(oid, {})
        extra["updated_at"] = max(extra.get("updated_at", ""), github_time(when))
        self._save_pull(oid, when)

    def _save_pull(self, oid: str, when: int) -> None:
        pull = views.pull_view(views.split(oid)[0], self.issues.entries[oid].data, self.pr_extra.get(oid, {}))
        self.pulls.put(oid, pull, int(parse_iso(pull["updated_at"])) * 1000)

    # ---- update --------------------------------------------------------------------------
    def _update(self, collection: str, when: int) -> str | None:
        if collection == "issue_comment":
            return self._update_comment(when)
        pool = [n for n in self.issues.entries if self._is_pr(n) == (collection == "pull_request")]
        if not pool:
            return None
        oid = self.rng.choice(pool)
        if collection == "pull_request" and self.rng.random() < 0.5:
            return self._pr_only_change(oid, when)
        issue = copy.deepcopy(self.issues.entries[oid].data)
        before = issue["title"]
        action = self._change_issue(issue, when, collection == "pull_request")
        self._save_issue(oid, issue, when)
        # An `edited` delivery says what changed (required by GitHub's webhook schemas for issues and PRs).
        self._hook(collection, action, oid, changes={"title": {"from": before}} if action == "edited" else None)
        return oid

    def _pr_only_change(self, oid: str, when: int) -> str:
        """A review requested or a commit pushed: the PR's updated_at moves, its issue's does not."""
        extra = self.pr_extra.setdefault(oid, {})
        extra["updated_at"] = github_time(when)
        # https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request: `synchronize` names the
        # head commits before and after the push; `review_requested` the reviewer asked.
        if self.rng.random() < 0.5:
            fields = {"before": self.pulls.entries[oid].data["head"]["sha"]}
            extra["sha"] = fields["after"] = f"{self.rng.getrandbits(160):040x}"
            action = "synchronize"
        else:
            reviewer = views.user(self.rng.choice(views.LOGINS))
            extra["reviewers"] = [reviewer]
            fields, action = {"requested_reviewer": reviewer}, "review_requested"
        self._save_pull(oid, when)
        self._hook("pull_request", action, oid, **fields)
        return oid

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
        comment = dict(self.comments.entries[cid].data)
        before = comment["body"]
        comment.update(body=self.phrase(6), updated_at=github_time(when))
        self.comments.put(cid, comment, when * 1000)
        self._hook("issue_comment", "edited", cid, changes={"body": {"from": before}})
        return cid

    # ---- delete and transfer -------------------------------------------------------------
    def _deletable(self) -> list[str]:
        return [n for n, e in self.issues.entries.items() if not self._is_pr(n) and e.data["comments"] == 0]

    def _delete(self, collection: str, when: int) -> str | None:
        pool = list(self.comments.entries) if collection == "issue_comment" else self._deletable()
        if collection not in self.mutable["delete"] or not pool:
            return None
        oid = self.rng.choice(pool)
        (self._remove_comment if collection == "issue_comment" else self._remove_issue)(oid, when)
        return oid

    def _transfer(self, collection: str, when: int) -> str | None:
        """Move an issue to another repository: gone here (301), a new issue there."""
        pool = self._deletable() if collection == "issue" else []
        if not pool:
            return None
        oid = self.rng.choice(pool)
        return self.transfer(oid, when)

    def transfer(self, oid: str, when: int) -> str:
        repo, _number = views.split(oid)
        target = self.rng.choice([r for r in REPOS if r != repo])
        new_oid = self._create("issue", when, repo=target)
        self.outbox.pop()  # the target repository sees an `opened` hook; the source sees `transferred`
        moved = copy.deepcopy(self.issues.entries[oid].data)
        moved["updated_at"] = github_time(when)
        self.issues.put(oid, moved, when * 1000)
        self._hook("issue", "transferred", oid, changes={
            "new_issue": self.issues.entries[new_oid].data,
            "new_repository": views.repository_in_pull(self.current_name(target), self.names_id(target))})
        self._hook("issue", "opened", new_oid)
        self.issues.delete(oid, when * 1000)
        self.transferred[oid] = new_oid
        return oid

    def names_id(self, repo: str) -> int:
        return views.REPOSITORIES[repo]

    def _remove_issue(self, oid: str, when: int) -> None:
        self._hook("issue", "deleted", oid)
        self.issues.delete(oid, when * 1000)

    def _remove_comment(self, cid: str, when: int) -> None:
        self._hook("issue_comment", "deleted", cid)
        comment = self.comments.delete(cid, when * 1000)
        oid = views.key(*views.repo_of_comment(comment.data))
        if oid in self.issues.entries:
            self._touch_issue(oid, when, -1)

    # ---- webhooks and truth --------------------------------------------------------------
    def _hook(self, collection: str, action: str, oid: str, changes: dict | None = None, **fields: Any) -> None:
        """Queue the webhook GitHub would send for this change (`fields`: the action's own top-level fields)."""
        if collection == "issue_comment":
            comment = self.comments.entries[oid].data
            repo, number = views.repo_of_comment(comment)
            issue = self.issues.entries.get(views.key(repo, number))
            payload = {"action": action, "issue": issue.data if issue else None, "comment": comment}
            event = "issue_comment"
        elif collection == "pull_request":
            repo = views.split(oid)[0]
            payload = {"action": action, "number": views.split(oid)[1], "pull_request": self.pulls.entries[oid].data}
            event = "pull_request"
        else:
            repo = views.split(oid)[0]
            payload = {"action": action, "issue": self.issues.entries[oid].data}
            event = "issues"
        self.send_hook(event, payload | fields, repo, changes)

    def send_hook(self, event: str, payload: dict, repo: str, changes: dict | None = None) -> None:
        """Queue a delivery of `event` about `repo` (its current name and its id), from octocat."""
        if self.seeding:
            return
        if changes:
            payload["changes"] = changes
        name = self.current_name(repo)
        # `sender` is a full `simple-user` (https://docs.github.com/en/webhooks/webhook-events-and-payloads).
        payload.update(repository=views.repository(name, views.REPOSITORIES[repo]), sender=views.user("octocat"))
        self.outbox.append(WebhookMessage("github", orjson.dumps(payload), event, uuid_from(self.rng)))

    def truth(self) -> dict[str, Any]:
        """Version = updated_at in ms; issues exclude PRs, which appear under pull_request."""
        issues = {n: {"version": e.version, "data": e.data} for n, e in self.issues.entries.items()
                  if not self._is_pr(n)}
        # A pull_request record has the list's shape on every path (see `apisync.apis.github.source`).
        pulls = {n: {"version": e.version, "data": views.pull_simple(e.data)} for n, e in self.pulls.entries.items()}
        comments = {c: {"version": e.version, "data": e.data} for c, e in self.comments.entries.items()}
        reviews, reviews_deleted = self.book.truth()
        return {"objects": {"issue": issues, "pull_request": pulls, "issue_comment": comments, **reviews},
                "deleted": {"issue": list(self.issues.deleted), "pull_request": [],
                            "issue_comment": list(self.comments.deleted), **reviews_deleted},
                "transferred": dict(self.transferred)}
