"""What the normalizer does when a re-fetch fails: a poison object is a dead letter, a hiccup a deferral.

A re-fetch (a thin webhook, a payload in another API version, an equal-version tie) asks the API for one
object. The HTTP edge (`apisync.http`) has already sorted its failure into fatal or retriable, after the
client's own retries:
- fatal (400, 403, 451...: the API will not give this object): the message is dead-lettered with the
  error as its reason and the partition moves on;
- retriable (5xx, timeout, 429, a malformed body) or `UnavailablePart` (a GitHub repository that
  refuses for a while: its objects are neither refused for good nor known to be gone): the
  object's outcome is `RefetchDeferred`. The normalizer writes the message back to its own input topic
  (same key, so the same partition) inside the batch's transaction, with `Deferral` headers (how often
  it was deferred, when it was first, why, and the time before which it is not tried again), and
  commits past it: nothing else waits for it. `DeferPolicy.after` decides each time: defer again with a
  growing delay, or, past `give_up_s` (APISYNC_REFETCH_GIVE_UP_S, 24 h by default) or `max_deferrals`,
  a dead letter "gave up after N deferrals: <first reason>";
- 401: the credential itself is refused, every re-fetch would fail alike, so the error stops the
  normalizer (dead-lettering every webhook would be worse than waiting for a new key).

`GuardedRefetch.many` re-fetches several objects, each standing for the messages of one record key,
in list calls of `per_call` objects where the re-fetch function has `many` (see
`apisync.webhooks.refetch`); every message of an object shares its outcome. A list call the API
refuses as a whole is asked again object by object, so each object's own answer decides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from apisync import errors
from apisync.events import Observation
from apisync.fence import SourcePosition
from apisync.http import FatalError, RetriableError
from apisync.sources.base import UnavailablePart

Wanted = Sequence[tuple[Observation, Sequence[SourcePosition]]]  # objects, each with its messages' positions
Headers = Sequence[tuple[str, bytes | None]] | None

log = logging.getLogger("apisync.normalizer")

# Statuses that refuse the credential, not the object.
CREDENTIAL_STATUSES = frozenset({401})
GIVE_UP_ENV = "APISYNC_REFETCH_GIVE_UP_S"
GIVE_UP_S = 24 * 3600.0  # a day of outages and 403s that lift is waited out; then a person looks
# Deferral header names; a message without `DEFERRALS_HEADER` was never deferred.
DEFERRALS_HEADER = "apisync-deferrals"
NOT_BEFORE_HEADER = "apisync-not-before"
FIRST_FAILED_HEADER = "apisync-first-failed-at"
FIRST_REASON_HEADER = "apisync-first-failure"
DEFERRAL_HEADERS = frozenset({DEFERRALS_HEADER, NOT_BEFORE_HEADER, FIRST_FAILED_HEADER, FIRST_REASON_HEADER})
MAX_REASON_CHARS = 500  # a header, not a log: the API's whole error body does not travel with the message


class RefetchRefused(errors.FatalError):
    """The API will not give this object: dead-letter its message (str() is the one-line reason)."""


class RefetchDeferred(errors.RetriableError):
    """A re-fetch failed transiently: write the message back to be tried later (str() is the reason)."""


Outcome = Observation | RefetchRefused | RefetchDeferred


@dataclass(frozen=True, slots=True)
class Deferral:
    """What a deferred message carries: deferrals so far, when and why it first failed, when it is due."""

    count: int
    first_failed_at: float  # epoch seconds: deferrals travel between processes, so wall-clock time
    first_reason: str
    not_before: float

    @classmethod
    def of(cls, headers: Headers) -> Deferral | None:
        """The deferral a message's headers carry, or None for a message never deferred."""
        found = {k: v.decode("utf-8", "replace") for k, v in headers or () if k in DEFERRAL_HEADERS and v is not None}
        if DEFERRALS_HEADER not in found:
            return None
        try:
            return cls(int(found[DEFERRALS_HEADER]), float(found.get(FIRST_FAILED_HEADER, 0)),
                       found.get(FIRST_REASON_HEADER, ""), float(found.get(NOT_BEFORE_HEADER, 0)))
        except ValueError:  # headers mangled on the way: defer as if for the first time, never drop it
            return None

    def headers(self) -> list[tuple[str, bytes]]:
        """The headers that carry this deferral."""
        return [(DEFERRALS_HEADER, str(self.count).encode()), (NOT_BEFORE_HEADER, f"{self.not_before:.3f}".encode()),
                (FIRST_FAILED_HEADER, f"{self.first_failed_at:.3f}".encode()),
                (FIRST_REASON_HEADER, self.first_reason.encode())]


def with_deferral(headers: Headers, deferral: Deferral) -> list[tuple[str, bytes | None]]:
    """A message's own headers (the receiver's, which the parser may read) with `deferral`'s in place of any older."""
    return [(k, v) for k, v in headers or () if k not in DEFERRAL_HEADERS] + deferral.headers()


def merged(deferrals: Iterable[Deferral | None]) -> Deferral | None:
    """One object's deferral when several of its messages are deferred together: the most deferrals, the
    earliest first failure (so the give-up clock never restarts), and the latest due time."""
    known = [d for d in deferrals if d is not None]
    if not known:
        return None
    first = min(known, key=lambda d: d.first_failed_at)
    return Deferral(max(d.count for d in known), first.first_failed_at, first.first_reason,
                    max(d.not_before for d in known))


@dataclass(frozen=True, slots=True)
class DeferPolicy:
    """When a deferred message is tried again, and when deferring stops and it is dead-lettered."""

    first_delay_s: float = 10.0
    max_delay_s: float = 600.0  # a due deferral costs one request; ten minutes apart over a day is ~150
    give_up_s: float = GIVE_UP_S
    max_deferrals: int | None = None  # the time bound alone suffices; a count is for operators who want one

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeferPolicy:
        """The default policy with `APISYNC_REFETCH_GIVE_UP_S` (seconds) applied when set."""
        value = (os.environ if env is None else env).get(GIVE_UP_ENV)
        return cls() if not value else cls(give_up_s=float(value))

    def delay(self, count: int) -> float:
        """Seconds before the `count`-th deferral is due: doubling from `first_delay_s`, capped."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** min(count - 1, 32))

    def after(self, previous: Deferral | None, reason: str, now: float) -> Deferral | RefetchRefused:
        """The next deferral of a message whose re-fetch failed transiently (`previous`: what it carried),
        or the dead letter that ends deferring."""
        if previous is None:
            previous = Deferral(0, now, reason[:MAX_REASON_CHARS], now)
        count = previous.count + 1
        exhausted = self.max_deferrals is not None and previous.count >= self.max_deferrals
        if exhausted or now - previous.first_failed_at >= self.give_up_s:
            return RefetchRefused(f"gave up after {previous.count} deferrals: {previous.first_reason}")
        return Deferral(count, previous.first_failed_at, previous.first_reason, now + self.delay(count))


class GuardedRefetch:
    """A re-fetch function whose failures are RefetchRefused (dead letter) or RefetchDeferred (try later)."""

    def __init__(self, refetch: Callable[[Observation], Observation]) -> None:
        self._refetch = refetch
        self._many = getattr(refetch, "many", None)
        # objects one request re-fetches: a list call's size, else 1
        self.per_call = max(1, int(getattr(refetch, "per_call", 1))) if callable(self._many) else 1

    def __call__(self, obs: Observation) -> Outcome:
        """The object as the API has it now, or why it is not to be had (now or ever)."""
        return self._chunk([obs])[0]

    def requests(self, objects_per_collection: Iterable[int]) -> int:
        """How many requests re-fetch this many objects per collection."""
        return sum(-(-count // self.per_call) for count in objects_per_collection)

    def many(self, wanted: Wanted) -> list[Outcome]:
        """Each object as the API has it now, for the messages at its sources; an object the API refuses
        is a RefetchRefused in its slot, one that failed transiently a RefetchDeferred."""
        results: list[Outcome | None] = [None] * len(wanted)
        for chunk in self._chunks(wanted):
            for index, outcome in zip(chunk, self._chunk([wanted[i][0] for i in chunk]), strict=True):
                results[index] = outcome
        return results  # type: ignore[return-value]

    def _chunks(self, wanted: Wanted) -> Iterable[list[int]]:
        """Indexes of `wanted` in list calls: one collection each, `per_call` at most."""
        by_collection: dict[str, list[int]] = {}
        for index, (obs, _sources) in enumerate(wanted):
            by_collection.setdefault(obs.collection, []).append(index)
        for indexes in by_collection.values():
            for start in range(0, len(indexes), self.per_call):
                yield indexes[start:start + self.per_call]

    def _chunk(self, observations: Sequence[Observation]) -> list[Outcome]:
        """One request's objects (one object without a list call)."""
        try:
            return self._many(observations) if len(observations) > 1 else [self._refetch(observations[0])]
        except RetriableError as exc:
            return [RefetchDeferred(f"re-fetch failed transiently: {exc}") for _obs in observations]
        except FatalError as exc:
            if exc.status in CREDENTIAL_STATUSES:
                log.error("re-fetch: the API refuses the credential, so every re-fetch would fail; stopping: %s", exc)
                raise
            if len(observations) > 1:
                log.info("re-fetch: a list call was refused (%s); asking object by object", exc)
                return [outcome for obs in observations for outcome in self._chunk([obs])]
            if isinstance(exc, UnavailablePart):  # the object's part refuses for now, not the object for good
                return [RefetchDeferred(f"re-fetch failed: {exc}")]
            return [RefetchRefused(f"re-fetch refused: {exc}")]
