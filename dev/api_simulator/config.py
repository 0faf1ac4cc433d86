"""Start-up settings and the run-time config the admin API edits."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from .stripe_versions import DEFAULT_VERSION, SUPPORTED

APIS = ("stripe", "github", "salesforce", "hubspot")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The one valid secret per API."""

    stripe: str = "sk_test_apisync"
    github: str = "ghp_apisync"
    salesforce: str = "sf_apisync_token"
    # The connected app and integration user the token endpoint knows (salesforce_oauth.py).
    salesforce_client_id: str = "3MVG9apisync_demo_consumer_key"
    salesforce_client_secret: str = "apisync_demo_consumer_secret"
    salesforce_refresh_token: str = "5Aep861apisync_demo_refresh_token"
    salesforce_username: str = "integration@apisync.demo"
    # A HubSpot private app's access token (sent as a Bearer token).
    hubspot: str = "pat-na1-apisync"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Credentials:
        """Defaults overridden by API_SIMULATOR_{STRIPE_KEY,GITHUB_TOKEN,SALESFORCE_TOKEN,HUBSPOT_TOKEN}."""
        env = os.environ if env is None else env
        base = cls()
        return cls(
            stripe=env.get("API_SIMULATOR_STRIPE_KEY") or base.stripe,
            github=env.get("API_SIMULATOR_GITHUB_TOKEN") or base.github,
            salesforce=env.get("API_SIMULATOR_SALESFORCE_TOKEN") or base.salesforce,
            hubspot=env.get("API_SIMULATOR_HUBSPOT_TOKEN") or base.hubspot,
        )


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulator starts; everything else is changed through /_admin."""

    seed: int = 42
    objects: int = 200
    epoch: float | None = None
    mutation_rate_per_s: float = 0.0
    credentials: Credentials = field(default_factory=Credentials.from_env)


def default_runtime() -> dict[str, Any]:
    """The admin-editable config with its defaults."""
    return {
        "mutation_rate_per_s": 0.0,
        "rate_limits": {
            "stripe": {"per_second": 25},
            "github": {"per_hour": 5000, "secondary_per_minute": 900},
            "salesforce": {"per_day": 100000},
            # HubSpot private apps: 100 requests per 10 s (Free/Starter; 190 on Professional/Enterprise,
            # changelog "Increasing our API limits"), and the search endpoints 5 per second per account.
            "hubspot": {"per_10_seconds": 100, "search_per_second": 5},
        },
        "webhooks": {api: {"url": None, "secrets": []} for api in APIS},
        "webhook_chaos": {"shuffle": False, "duplicate_rate": 0.0, "max_attempts": 5, "retry_base_s": 0.2},
        "events_retention_days": 30,
        # Upper bound (s) of the random delay before a new Stripe event shows in /v1/events.
        "stripe_events_lag_s": 3.0,
        # Share of Stripe customer and charge updates made through a sub-resource (discount, tax ID, dispute,
        # refund) whose event names only the sub-resource (see stripe_subresources).
        "stripe_subresource_share": 0.35,
        # The account's default Stripe API version; change it to simulate an account upgrade.
        "stripe_api_version": DEFAULT_VERSION,
        # Salesforce session timeout (Setup > Session Settings, default 2 hours), on the server clock.
        "salesforce_session_lifetime_s": 7200,
        # PEM public key of the connected app's certificate, for JWT-bearer assertions ("" = none).
        "salesforce_jwt_public_key": "",
        # Share of mutations that run in a transaction: visible `lag_s` after their SystemModstamp (which is
        # the transaction's start; see salesforce_model). Most transactions commit within seconds; the
        # fidelity tests raise lag_s to 300 for the 5-minute transaction.
        "salesforce_late_commits": {"share": 0.1, "lag_s": 3},
        # Outbound Messaging (SOAP) deliveries of created/updated rows, beside the JSON webhooks.
        "salesforce_outbound": {"url": None, "organization_id": "00D5g000004ApisEAC", "max_batch": 100},
        # Upper bound (s) of the random delay before a HubSpot change shows in CRM search (hubspot_search.py).
        "hubspot_search_lag_s": 1.0,
    }


def _stripe_version(value: Any) -> str | None:
    return None if value in SUPPORTED else f"must be one of {', '.join(SUPPORTED)}"


def _not_null(value: Any) -> str | None:
    return "must not be null" if value is None else None


# Leaves whose values need more than a type check (dotted path -> problem or None).
VALIDATORS = {"stripe_api_version": _stripe_version, "stripe_events_lag_s": _not_null,
              "hubspot_search_lag_s": _not_null}


class ConfigError(ValueError):
    """A config patch names an unknown key or has a value of the wrong type."""


def merge_config(base: dict[str, Any], patch: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base`, rejecting keys `base` does not have."""
    if not isinstance(patch, dict):
        raise ConfigError(f"config{path or ''} must be a JSON object")
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        where = f"{path}.{key}"
        if key not in merged:
            raise ConfigError(f"unknown config key {where.lstrip('.')}")
        current = merged[key]
        if isinstance(current, dict) and key != "secrets":
            merged[key] = merge_config(current, value, where)
        else:
            merged[key] = _check_leaf(where.lstrip("."), current, value)
    return merged


def _validate(where: str, value: Any) -> Any:
    check = VALIDATORS.get(where)
    problem = check(value) if check else None
    if problem:
        raise ConfigError(f"{where} {problem}")
    return value


def _check_leaf(where: str, current: Any, value: Any) -> Any:
    """Accept null for optional leaves, numbers for numbers, strings for strings, lists for lists."""
    if value is None:
        return _validate(where, None)
    if isinstance(current, str) and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{where} must be a number >= 0")
    if isinstance(current, list) and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where} must be a list of strings")
    return _validate(where, value)
