"""The APIs apisync syncs: one spec each (`apisync.apis.<api>`), registered here, one line each.

Adding an API: write `sources/<api>.py` (the Source), `apis/<api>.py` (its `SPEC`), and add one line
below. Everything else (catalog, topics, CLI choices, DAGs, receiver, normalizer) derives from it.
"""

from __future__ import annotations

from typing import Any

from apisync.apis import github, hubspot, salesforce, stripe
from apisync.apis.registry import ApiSpec, WebhookSpec, all_specs, register, spec_for, unregister

register(stripe.SPEC)
register(github.SPEC)
register(salesforce.SPEC)
register(hubspot.SPEC)

__all__ = ["ApiSpec", "WebhookSpec", "all_specs", "build_source", "register", "spec_for", "unregister"]


def build_source(settings: Any) -> Any:
    """The Source of one API account (ApiSettings)."""
    return spec_for(settings.api).build_source(settings)
