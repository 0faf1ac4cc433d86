"""Where the current refresh token of a rotating family lives: one per process, or one in Redis for all.

With refresh-token rotation on (a Salesforce connected app or external client app setting), every refresh
answers a new refresh token and invalidates the one sent; "any attempted reuse of an invalidated refresh
token results in the immediate revocation of the current refresh token and all associated access tokens"
(Salesforce Help, "Force one-time-use Refresh Tokens - (RTR) Refresh Token Rotation", article 005316711;
"OAuth 2.0 Refresh Token Flow for Renewed Sessions"). So every worker of one account must refresh with
the newest token, one at a time: two workers sending the same token at once get the whole family revoked.

`RedisRefreshTokens` keeps the newest token under `apisync:oauth:refresh:<api>:<family>` (family: a hash of
the token endpoint, client id and the configured refresh token, so a re-authorised connection with a new
refresh token starts a new family) and serialises refreshes with a lock (`...:lock`, SET NX PX with an
owner, released by compare-and-delete). The new token replaces the old one by compare-and-set, so a
worker whose lock lease ran out can never overwrite a newer token with an older one. The lock and the
token are plain Redis keys without expiry (the lock's lease aside): a Redis that loses them (no AOF,
`maxmemory` eviction) loses the rotated token, and the configured one is then already invalidated.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from apisync.errors import RetriableError

# Compare-and-set: the newest token moves from `old` (the configured seed when nothing is stored) to `new`.
_REPLACE = """
local current = redis.call('GET', KEYS[1]) or ARGV[3]
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
LEASE_MS = 60_000  # longer than a token request may take (the client's timeout is 30 s)
WAIT_S = 90.0  # a worker waits this long for another's refresh before giving up (then a task retry)
POLL_S = 0.05


class RefreshLockTimeout(RetriableError):
    """Another worker held the refresh lock for longer than a refresh can take."""


class RefreshTokens(Protocol):
    """The current refresh token of a family, handed to one refresher at a time."""

    def held(self) -> Any:
        """A context manager: the refresh lock, yielding the newest refresh token."""

    def replace(self, old: str, new: str) -> bool:
        """Store `new` as the newest token if `old` still is; False if another refresher got there first."""


class LocalRefreshTokens:
    """The newest refresh token in this process only (no shared store configured)."""

    def __init__(self, seed: str) -> None:
        self._current, self._lock = seed, threading.Lock()

    @contextmanager
    def held(self) -> Iterator[str]:
        """The refresh lock of this process, yielding the newest refresh token."""
        with self._lock:
            yield self._current

    def replace(self, old: str, new: str) -> bool:
        """`new` becomes the newest token if `old` still is."""
        if self._current != old:
            return False
        self._current = new
        return True


def family_key(api: str, token_url: str, client_id: str, seed: str) -> str:
    """`apisync:oauth:refresh:<api>:<family>`; the family hash names no secret and cannot be reversed."""
    family = hashlib.sha256(f"{token_url}\n{client_id}\n{seed}".encode()).hexdigest()[:24]
    return f"apisync:oauth:refresh:{api}:{family}"


class RedisRefreshTokens:
    """The newest refresh token of one family in Redis, shared by every worker; refreshes one at a time."""

    def __init__(self, client: Any, key: str, seed: str, *, lease_ms: int = LEASE_MS, wait_s: float = WAIT_S,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis, self._key, self._lock_key, self._seed = client, key, f"{key}:lock", seed
        self._lease_ms, self._wait_s, self._sleep, self._clock = lease_ms, wait_s, sleep, clock
        self._replace = client.register_script(_REPLACE)
        self._release = client.register_script(_RELEASE)

    @contextmanager
    def held(self) -> Iterator[str]:
        """The account-wide refresh lock (RefreshLockTimeout after `wait_s`), yielding the newest token."""
        owner = secrets.token_hex(16)
        self._acquire(owner)
        try:
            yield self.current()
        finally:
            self._release(keys=[self._lock_key], args=[owner])

    def current(self) -> str:
        """The newest refresh token: the stored one, else the configured one."""
        stored = self._redis.get(self._key)
        return stored.decode() if stored else self._seed

    def replace(self, old: str, new: str) -> bool:
        """`new` becomes the newest token if `old` still is (one atomic compare-and-set in Redis)."""
        return bool(self._replace(keys=[self._key], args=[old, new, self._seed]))

    def _acquire(self, owner: str) -> None:
        deadline = self._clock() + self._wait_s
        while not self._redis.set(self._lock_key, owner, nx=True, px=self._lease_ms):
            if self._clock() >= deadline:
                raise RefreshLockTimeout(f"the refresh lock stayed taken for {self._wait_s:.0f}s")
            self._sleep(POLL_S)
