"""GitHub pull request reviews and review comments, and how they change.

- A review is submitted with a state (APPROVED, CHANGES_REQUESTED, COMMENTED) and never gets an
  `updated_at` (https://docs.github.com/en/rest/pulls/reviews#get-a-review-for-a-pull-request); it can be
  edited (its body) or dismissed (state DISMISSED, https://docs.github.com/en/rest/pulls/reviews#dismiss-a-review-for-a-pull-request),
  never deleted once submitted (only a PENDING one: https://docs.github.com/en/rest/pulls/reviews#delete-a-pending-review-for-a-pull-request).
- Submitting and dismissing bump the PR's `updated_at` (they add to its timeline), its issue's not.
  A body edit does not move the PR here: the docs promise nothing, so the simulator takes the case that
  hides most from a poller.
- Review comments carry `updated_at`; they are created inside a review (a reply opens a COMMENTED
  review of its own, `in_reply_to_id` naming the comment it answers), edited, and deleted
  (https://docs.github.com/en/rest/pulls/comments). Creating one bumps the PR's `updated_at`.
- Webhooks (https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request_review and
  #pull_request_review_comment): `pull_request_review` submitted | edited | dismissed, with the review
  (state in lower case), the PR as /pulls lists it and the repository; `pull_request_review_comment`
  created | edited | deleted, with the comment as the REST API shows it.
"""
from __future__ import annotations

import copy
import random
from typing import Any

from . import github_views as views
from .model import WORDS
from .store import Collection
from .timefmt import github_time

REVIEW, COMMENT = "pull_request_review", "pull_request_review_comment"
COLLECTIONS = (REVIEW, COMMENT)
STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED")
FIRST_REVIEW, FIRST_COMMENT = 3_000_000_000, 4_000_000_000


def _review_order(oid: str, data: dict) -> tuple:
    return (data["submitted_at"], int(data["id"]), oid)


def _comment_order(field: str):
    return lambda oid, data: (data[field], "", int(oid), oid)


class ReviewBook:
    """The reviews and review comments of one GitHubModel's pull requests."""

    def __init__(self, model: Any, seed: int) -> None:
        self.model = model
        # An rng of its own: the issues, PRs and comments a seed gives stay what they were without reviews.
        self.rng = random.Random(f"github-reviews:{seed}")
        self.reviews = Collection(REVIEW, {"created": _review_order})
        self.comments = Collection(COMMENT, {"created": _comment_order("created_at"),
                                             "updated": _comment_order("updated_at")})
        self.next_review, self.next_comment = 1, 1

    # ---- seeding -------------------------------------------------------------------------
    def seed(self, count: int) -> None:
        """`count` reviews (each with up to two comments) of PRs created before them; no webhooks."""
        now = self.model.clock.now_s()
        times = sorted(self.rng.randint(now - 45 * 86400, now - 120) for _ in range(count))
        for index in range(1, len(times)):
            if self.rng.random() < 0.35:
                times[index] = times[index - 1]  # same-second ties, as upstream
        # PRs by creation, so the PRs open at each (ascending) review time are a growing prefix.
        created = [(e.data["created_at"], oid) for oid, e in self.model.pulls.entries.items()]
        created.sort(key=lambda pair: pair[0])
        pulls: list[str] = []
        for when in times:
            stamp = github_time(when)
            while len(pulls) < len(created) and created[len(pulls)][0] <= stamp:
                pulls.append(created[len(pulls)][1])
            if pulls:
                self._submit(self.rng.choice(pulls), when, hooks=False)

    # ---- mutations -----------------------------------------------------------------------
    def mutate(self, kind: str, collection: str, when: int) -> str | None:
        """Create, update or delete one review or review comment now; None when none can be."""
        if collection == REVIEW:
            return {"create": self._create_review, "update": self._update_review}.get(kind, _none)(when)
        return {"create": self._reply, "update": self._edit_comment, "delete": self._delete_comment}[kind](when)

    def delete_comment(self, cid: str, when: int) -> bool:
        """Delete a named review comment (False if there is none)."""
        if cid not in self.comments.entries:
            return False
        self._hook_comment("deleted", cid)
        self.comments.delete(cid, when * 1000)
        return True

    def _create_review(self, when: int) -> str | None:
        pulls = list(self.model.pulls.entries)
        return self._submit(self.rng.choice(pulls), when) if pulls else None

    def _submit(self, pull: str, when: int, hooks: bool = True, state: str | None = None,
                reply_to: dict | None = None) -> str:
        repo, number = views.split(pull)
        review_id = FIRST_REVIEW + self.next_review
        self.next_review += 1
        state = state or self.rng.choice(STATES)
        body = "" if state == "APPROVED" and self.rng.random() < 0.5 else self._phrase()
        commit = self.model.pulls.entries[pull].data["head"]["sha"]
        oid = views.review_key(repo, number, review_id)
        review = views.review_view(repo, number, review_id, when, self.rng.choice(views.LOGINS), state,
                                   "" if reply_to else body, commit)
        self.reviews.put(oid, review, when * 1000)
        comments = 1 if reply_to else self.rng.randint(0, 2)
        made = [self._comment(pull, review_id, when, commit, reply_to) for _ in range(comments)]
        self.model.bump_pull(pull, when)
        if hooks:
            self._hook_review("submitted", oid)
            for cid in made:
                self._hook_comment("created", cid)
        return oid

    def _comment(self, pull: str, review_id: int, when: int, commit: str, reply_to: dict | None) -> str:
        repo, number = views.split(pull)
        cid = FIRST_COMMENT + self.next_comment
        self.next_comment += 1
        line = reply_to["line"] if reply_to else self.rng.randint(1, 400)
        answered = None if reply_to is None else reply_to.get("in_reply_to_id", reply_to["id"])
        comment = views.review_comment_view(repo, number, cid, review_id, when, self.rng.choice(views.LOGINS),
                                            self._phrase(), commit, line, answered)
        self.comments.put(str(cid), comment, when * 1000)
        return str(cid)

    def _update_review(self, when: int) -> str | None:
        if not self.reviews.entries:
            return None
        oid = self.rng.choice(list(self.reviews.entries))
        review = copy.deepcopy(self.reviews.entries[oid].data)
        if review["state"] in ("APPROVED", "CHANGES_REQUESTED") and self.rng.random() < 0.5:
            self.dismiss(oid, when)
            return oid
        before = review["body"]
        review["body"] = self._phrase()
        self.reviews.put(oid, review, self.reviews.entries[oid].version)  # no stamp moves: reviews have none
        self._hook_review("edited", oid, {"body": {"from": before}})
        return oid

    def dismiss(self, oid: str, when: int) -> None:
        """Dismiss a review: state DISMISSED, its submitted_at kept, the PR's updated_at moved."""
        review = {**copy.deepcopy(self.reviews.entries[oid].data), "state": "DISMISSED"}
        self.reviews.put(oid, review, self.reviews.entries[oid].version)
        self.model.bump_pull(oid.partition("/")[0], when)
        self._hook_review("dismissed", oid)

    def _reply(self, when: int) -> str | None:
        """A reply to a review comment: a COMMENTED review of its own holding the one comment."""
        if not self.comments.entries:
            return None
        answered = self.comments.entries[self.rng.choice(list(self.comments.entries))].data
        repo, number = views.pull_of_review_comment(answered)
        pull = views.key(repo, number)
        if pull not in self.model.pulls.entries:
            return None
        before = self.next_comment
        self._submit(pull, when, state="COMMENTED", reply_to=answered)
        return str(FIRST_COMMENT + before)

    def _edit_comment(self, when: int) -> str | None:
        if not self.comments.entries:
            return None
        cid = self.rng.choice(list(self.comments.entries))
        comment = copy.deepcopy(self.comments.entries[cid].data)
        before = comment["body"]
        comment.update(body=self._phrase(), updated_at=github_time(when))
        self.comments.put(cid, comment, when * 1000)
        self._hook_comment("edited", cid, {"body": {"from": before}})
        return cid

    def _delete_comment(self, when: int) -> str | None:
        if not self.comments.entries:
            return None
        cid = self.rng.choice(list(self.comments.entries))
        self.delete_comment(cid, when)
        return cid

    def _phrase(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(6)).capitalize()

    # ---- webhooks and truth --------------------------------------------------------------
    def _hook_review(self, action: str, oid: str, changes: dict | None = None) -> None:
        pull = oid.partition("/")[0]
        payload = {"action": action, "review": views.webhook_review(self.reviews.entries[oid].data),
                   "pull_request": views.pull_simple(self.model.pulls.entries[pull].data)}
        self.model.send_hook(REVIEW, payload, views.split(pull)[0], changes)

    def _hook_comment(self, action: str, cid: str, changes: dict | None = None) -> None:
        comment = self.comments.entries[cid].data
        repo, number = views.pull_of_review_comment(comment)
        pull = self.model.pulls.entries.get(views.key(repo, number))
        payload = {"action": action, "comment": comment, "pull_request": views.pull_simple(pull.data) if pull else None}
        self.model.send_hook(COMMENT, payload, repo, changes)

    def truth(self) -> tuple[dict[str, Any], dict[str, list]]:
        """(live objects by collection, deleted ids by collection); a review's version is its submitted_at."""
        objects = {name: {oid: {"version": e.version, "data": e.data} for oid, e in store.entries.items()}
                   for name, store in ((REVIEW, self.reviews), (COMMENT, self.comments))}
        return objects, {REVIEW: [], COMMENT: list(self.comments.deleted)}


def _none(_when: int) -> None:
    return None
