"""GitHub pull request reviews: walked per pull request, because GitHub lists them nowhere else.

GitHub serves a PR's reviews only as `GET /repos/{o}/{r}/pulls/{number}/reviews` ("in chronological
order", Link pages, no `since`, https://docs.github.com/en/rest/pulls/reviews#list-reviews-for-a-pull-request)
and one as `/pulls/{number}/reviews/{review_id}`. So:

- **Key**: `<repository id>#<number>/<review id>`. The review id alone is unique, but a review can be
  re-fetched (reconcile, an equal-version tie) only through its PR, so the id carries the number; the
  repository by id, as for issues and PRs (see `source`).
- **Version**: `submitted_at`. A review has no `updated_at`: an edit of its body or a dismissal keeps its
  version. The fence then sees an equal version with other content, answers "conflict", and the normalizer
  re-fetches the review: GitHub's current state decides, whatever order the observations arrived in.
  A PENDING review (a draft only its author sees) has no `submitted_at` and is not synced until submitted.
- **Backfill**: every PR in creation order (`CreatedOrderWalk`), each PR's reviews page by page. The
  checkpoint names the PR page being read and moves past it only once all its PRs' reviews are emitted:
  a PR page's review pages are batches of their own (memory bounded by one page), and a crash re-reads
  the PR page (duplicates, which the fence answers "unchanged").
- **Incremental**: PRs updated since the cursor (`UpdatedDescWalk`, down to the cursor minus the lookback),
  each one's reviews re-listed (unchanged ones cost the fence an "unchanged"). A submitted review moves its
  PR's `updated_at`, which airbyte source-github relies on for the same walk (airbytehq/airbyte#11623:
  a cursor on `submitted_at` misses PENDING reviews and never moves); GitHub's docs do not promise it, nor
  anything for a body edit or a dismissal. What the PR's stamp does not show reaches Kafka by its
  `pull_request_review` webhook (submitted | edited | dismissed), the PR's next change, or a backfill.
- **Reconcile**: lists every PR's reviews (one request per PR and review page). GitHub deletes no
  submitted review, so the sweep exists for completeness, at the reconcile lane's low priority.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apisync.apis.github.walks import CreatedOrderWalk, UpdatedDescWalk, get_page
from apisync.events import Observation, iso_to_ms
from apisync.sources.base import Batch, Gone, require
from apisync.sources.keyset import KeysetPosition

COLLECTION = "pull_request_review"


def review_record_id(repository_id: int, number: Any, review_id: Any) -> str:
    """`<repository id>#<number>/<review id>`: the record id of a review, the same on every path."""
    return f"{int(repository_id)}#{int(number)}/{int(review_id)}"


def split_review_id(object_id: str) -> tuple[int, int, int]:
    """`<repository id>#<number>/<review id>` -> (repository id, number, review id)."""
    repository, _, rest = object_id.partition("#")
    number, _, review = rest.partition("/")
    if not (repository.isdigit() and number.isdigit() and review.isdigit()):
        raise ValueError(f"github review id must look like <repository id>#<number>/<review id>, got {object_id!r}")
    return int(repository), int(number), int(review)


def is_submitted(review: Any) -> bool:
    """Whether a listed review is submitted (a PENDING one has no `submitted_at` and is its author's draft)."""
    return isinstance(review, dict) and bool(review.get("submitted_at"))


class ReviewWalks:
    """The reviews of one GitHubSource's repositories: backfill, poll, listing and fetch."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def backfill(self, client, repo: str, states: dict[str, dict], start_ms: int | None) -> Iterator[Batch]:
        """Every submitted review of PRs updated since `start_ms` (all PRs without it), resumable per PR page."""
        src = self.source
        state = states[repo] if "next" in states[repo] else {}
        path, repository_id = src._path(client, repo, "pulls"), src._resolved[repo].id
        walk = CreatedOrderWalk(client, path, src.page_size, dict(state))
        for pulls in walk.pages():
            for pull in pulls:
                if start_ms is None or iso_to_ms(require(pull, "updated_at", src.api, path)) >= start_ms:
                    yield from self._reviews_of(client, path, repository_id, pull, "backfill", src._cursor(states))
            states[repo] = dict(walk.state)  # every PR of the page is read: the checkpoint moves past it
            yield Batch([], src._cursor(states))

    def poll(self, client, repo: str, states: dict[str, dict], position: KeysetPosition, floor: int
             ) -> Iterator[Batch]:
        """The reviews of every PR updated since `floor`; the cursor moves only once the walk reached it."""
        src = self.source
        path, repository_id = src._path(client, repo, "pulls"), src._resolved[repo].id
        walk = UpdatedDescWalk(client, path, position,
                               lambda pr: src._id_version(repository_id, "pull_request", pr), src.page_size,
                               states[repo].get("etag"))
        for pulls in walk.pages(floor):
            for pull in pulls:
                yield from self._reviews_of(client, path, repository_id, pull, "poll", src._cursor(states))
        states[repo] = {**position.to_cursor(src.lookback_ms, src._budget()), "etag": walk.new_etag}

    def list_ids(self, client, repo: str) -> Iterator[str]:
        """The id of every submitted review of the repository (one listing per PR)."""
        src = self.source
        path, repository_id = src._path(client, repo, "pulls"), src._resolved[repo].id
        for pulls in CreatedOrderWalk(client, path, src.page_size, {}).pages():
            for pull in pulls:
                for page in self._pages(client, path, pull):
                    yield from (review_record_id(repository_id, pull["number"], r["id"]) for r in page
                                if is_submitted(r))

    def fetch(self, client, object_id: str) -> Observation | Gone:
        """One review now, through its PR; Gone when GitHub has it no more (404)."""
        repository_id, number, review_id = split_review_id(object_id)
        data = self.source._get_one(client, repository_id, f"pulls/{number}/reviews/{review_id}")
        if isinstance(data, Gone):
            return data
        return self.observe(repository_id, number, data, "reconcile")

    def observe(self, repository_id: int, number: int, review: Any, source: str) -> Observation:
        """A review as an observation at its `submitted_at`."""
        endpoint = f"/repositories/{repository_id}/pulls/{number}/reviews"
        object_id = review_record_id(repository_id, number, require(review, "id", "github", endpoint))
        version = iso_to_ms(require(review, "submitted_at", "github", endpoint))
        return self.source.factory.make(COLLECTION, object_id, version, review, source=source)

    def _reviews_of(self, client, path: str, repository_id: int, pull: Any, source: str,
                    cursor: dict[str, Any]) -> Iterator[Batch]:
        number = require(pull, "number", "github", path)
        for page in self._pages(client, path, pull):
            observations = [self.observe(repository_id, number, r, source) for r in page if is_submitted(r)]
            if observations:  # most PRs have no review: no empty page to commit
                yield Batch(observations, cursor)

    def _pages(self, client, path: str, pull: Any) -> Iterator[list[Any]]:
        page = get_page(client, f"{path}/{require(pull, 'number', 'github', path)}/reviews",
                        {"per_page": self.source.page_size})
        while True:
            yield page.items
            if page.next_url is None:
                return
            page = get_page(client, page.next_url)
