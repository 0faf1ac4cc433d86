"""One module per API. Adding an API = a module with a Source class, registered in `build_source`."""

from __future__ import annotations

from apisync.settings import ApiSettings
from apisync.sources.base import Batch, Source
from apisync.sources.github import GitHubSource
from apisync.sources.salesforce import SalesforceSource
from apisync.sources.stripe import StripeSource

__all__ = ["Batch", "Source", "build_source"]


def build_source(settings: ApiSettings) -> Source:
    """The source object for one API account."""
    page_size = {"page_size": int(settings.extra["page_size"])} if settings.extra.get("page_size") else {}
    if settings.api == "stripe":
        options = {name: settings.extra[name] for name in ("api_version", "settle_s") if settings.extra.get(name)}
        return StripeSource(**page_size, **options)
    if settings.api == "github":
        repos = settings.extra.get("repos") or [settings.extra.get("repo")]
        if isinstance(repos, str):
            repos = [repos]
        if not repos or not all(repos):
            raise ValueError("the github connection needs extra {\"repos\": [\"owner/name\", ...]}")
        return GitHubSource(list(dict.fromkeys(repos)), **page_size)  # every repo once, in the given order
    if settings.api == "salesforce":
        lookback = settings.extra.get("lookback_s")
        return SalesforceSource(**page_size, **({"lookback_ms": int(float(lookback) * 1000)} if lookback else {}))
    raise ValueError(f"unknown api {settings.api!r}; known: stripe, github, salesforce")
