"""Plain settings the sync engine runs with; the Airflow hooks build them from connections."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """One API account: where it is, its token, and its request budget."""

    api: str
    base_url: str
    token: str = field(repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)
    rate_per_s: float | None = None
    burst: int = 5

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
