"""Plain settings the sync engine runs with; the Airflow hooks build them from connections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# OAuth 2.0 grants an ApiSettings can renew its access token with (see apisync.http.oauth).
OAUTH_FLOWS = ("refresh_token", "client_credentials", "jwt_bearer")


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """How to obtain access tokens: a grant, the token endpoint and the grant's credentials.

    Secrets are excluded from repr; `__post_init__` names a missing field, never a value.
    """

    flow: str
    token_url: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    private_key: str = field(default="", repr=False)  # PEM, RS256 signing key for jwt_bearer
    username: str = ""  # jwt_bearer: the `sub` claim
    audience: str = ""  # jwt_bearer: the `aud` claim

    def __post_init__(self) -> None:
        if self.flow not in OAUTH_FLOWS:
            raise ValueError(f"unknown OAuth flow {self.flow!r}; known: {', '.join(OAUTH_FLOWS)}")
        needed = {"refresh_token": ("client_id", "refresh_token"),
                  "client_credentials": ("client_id", "client_secret"),
                  "jwt_bearer": ("client_id", "private_key", "username", "audience")}[self.flow]
        missing = [name for name in ("token_url", *needed) if not getattr(self, name)]
        if missing:
            raise ValueError(f"OAuth flow {self.flow} needs {', '.join(missing)}")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log or an error."""
        return tuple(s for s in (self.client_secret, self.refresh_token, self.private_key) if s)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """One API account: where it is, its token (or how to obtain one), and its request budget."""

    api: str
    base_url: str
    token: str = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)
    rate_per_s: float | None = None
    burst: int = 5
    oauth: OAuthSettings | None = field(default=None, repr=False)

    @property
    def account(self) -> str:
        """Names the shared rate-limit budget; every worker using this token shares it."""
        return str(self.extra.get("account") or "default")


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """Everything one sync run needs: Kafka client config, Redis, the API account."""

    kafka: Mapping[str, Any]
    redis_url: str
    api: ApiSettings
