"""Time formats of the four APIs, all UTC."""
from __future__ import annotations

from datetime import UTC, datetime
from email.utils import formatdate


def github_time(epoch_s: int) -> str:
    """GitHub style: 2026-11-26T14:53:32Z."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def salesforce_time(epoch_s: int) -> str:
    """Salesforce style: 2026-11-26T14:53:32.000+0000."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def iso_time(epoch_s: float) -> str:
    """ISO 8601 with milliseconds and Z."""
    dt = datetime.fromtimestamp(epoch_s, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def hubspot_time(epoch_ms: int) -> str:
    """HubSpot style: 2026-11-26T14:53:32.123Z (millisecond precision)."""
    return datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def http_date(epoch_s: float) -> str:
    """RFC 7231 Date header value."""
    return formatdate(epoch_s, usegmt=True)


def parse_iso(text: str) -> float:
    """Parse ISO 8601 (Z, +00:00, +0000, optional fraction) to epoch seconds; ValueError if bad."""
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    if len(value) >= 5 and value[-5] in "+-" and value[-3] != ":" and "T" in value:
        value = value[:-2] + ":" + value[-2:]
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
