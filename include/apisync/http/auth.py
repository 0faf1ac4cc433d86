"""httpx authentication for API tokens; the token never appears in repr, logs or errors."""
from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterable

import httpx

REDACTED = "***"


class BearerTokenAuth(httpx.Auth):
    """Sends `Authorization: Bearer <token>` (secret keys, personal access tokens, OAuth access tokens)."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError(f"{type(self).__name__} needs a non-empty token")
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the bearer header to every request."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values the HTTP layer must scrub from any text it emits."""
        return (self._token,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(token={REDACTED})"

    __str__ = __repr__

    def __reduce__(self):
        # Refuse to pickle: a pickled auth object would carry the token into XCom or logs.
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds a secret)")


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret in text with ***, longest first so overlaps stay hidden."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class SecretScrubber(logging.Filter):
    """Logging filter that masks registered secrets, e.g. in httpx's own request log lines."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        """Register more values to mask."""
        with self._lock:
            self._secrets.update(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = redact(message, tuple(self._secrets))
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_SCRUBBER = SecretScrubber()


def scrub_logs(secrets: Iterable[str],
               loggers: Iterable[str] = ("httpx", "httpcore", "apisync.http")) -> None:
    """Mask these secrets in the HTTP libraries' log records (httpx logs full request URLs)."""
    _SCRUBBER.add(secrets)
    for name in loggers:
        logger = logging.getLogger(name)
        if _SCRUBBER not in logger.filters:
            logger.addFilter(_SCRUBBER)
