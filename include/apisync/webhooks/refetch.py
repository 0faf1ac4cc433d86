"""Thin webhooks: fetch the full object the payload only names, through an injected API client.

`http_refetcher(client)` returns `refetch(observation) -> observation with data`. The client is an
`apisync.http.ApiClient` built with `lane="webhook"`, so re-fetches take the highest-priority share of
the API's rate limit. Kept deliberately small: one path template per api.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from apisync.events import Observation, ObservationError, iso_to_ms

_SALESFORCE_TYPES = {"account": "Account", "contact": "Contact", "opportunity": "Opportunity"}
_GITHUB_PATHS = {"issue": "issues/{id}", "pull_request": "pulls/{id}", "issue_comment": "issues/comments/{id}"}

Refetch = Callable[[Observation], Observation]


def object_path(obs: Observation, github_repo: str = "apisync/demo") -> str:
    """The single-object GET path for an observation's object."""
    if obs.api == "stripe":
        return f"/v1/{obs.collection}s/{obs.id}"
    if obs.api == "github":
        return f"/repos/{github_repo}/" + _GITHUB_PATHS[obs.collection].format(id=obs.id)
    if obs.api == "salesforce":
        return f"/services/data/v61.0/sobjects/{_SALESFORCE_TYPES[obs.collection]}/{obs.id}"
    raise ObservationError(f"no re-fetch path for api {obs.api!r}")


def _version_of(obs: Observation, data: dict[str, Any]) -> int:
    """The fetched object's own ordering stamp; Stripe objects carry none, so keep the event's."""
    if obs.api == "github" and data.get("updated_at"):
        return iso_to_ms(data["updated_at"])
    if obs.api == "salesforce" and data.get("SystemModstamp"):
        return iso_to_ms(data["SystemModstamp"])
    return obs.version


def http_refetcher(client: Any, github_repo: str = "apisync/demo") -> Refetch:
    """A refetch function over an ApiClient (use lane="webhook")."""

    def refetch(obs: Observation) -> Observation:
        data = client.get_json(object_path(obs, github_repo)).data
        if not isinstance(data, dict):
            raise ObservationError(f"re-fetch of {obs.key} returned no object")
        return dataclasses.replace(obs, data=data, version=max(obs.version, _version_of(obs, data)),
                                   thin=False)

    return refetch
