"""The Simulator: one object holding clock, datasets, config, faults, limits, webhooks and stats."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .clock import Clock
from .config import APIS, ConfigError, SimulatorConfig, default_runtime, merge_config
from .faults import Faults
from .github_model import GitHubModel
from .hubspot_model import HubSpotModel
from .model import ApiModel
from .ratelimit import RateLimiter
from .salesforce import Cursors
from .salesforce_model import SalesforceModel
from .salesforce_oauth import Sessions
from .stripe_model import StripeModel
from .webhooks import WebhookDispatcher


class Simulator:
    """Everything a request handler or admin call needs, built from a SimulatorConfig."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None,
                 dispatcher: WebhookDispatcher | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock or Clock(start=self.config.epoch)
        self.runtime: dict[str, Any] = default_runtime()
        self.runtime["mutation_rate_per_s"] = float(self.config.mutation_rate_per_s)
        self.faults = Faults()
        self.limiter = RateLimiter(self.clock.now, lambda: self.runtime["rate_limits"])
        self.webhooks = dispatcher or WebhookDispatcher(lambda: self.runtime, seed=self.config.seed)
        self.stats: dict[str, dict[str, int]] = {}
        self.sf_cursors = Cursors()
        self.models: dict[str, ApiModel] = {}
        self.reset(self.config.seed, self.config.objects)

    def reset(self, seed: int, objects: int, epoch: float | None = None,
              counts: Mapping[str, Mapping[str, int]] | None = None) -> None:
        """Rebuild every dataset (`objects` per collection, or `counts[api][collection]`); clear faults, stats,
        counters and pending webhooks."""
        counts = counts or {}
        self._check_counts(counts)
        if epoch is not None:
            self.clock = Clock(start=epoch)
            self.limiter._now = self.clock.now
        self.models = {
            "stripe": StripeModel(self.clock, seed, lambda: self.runtime),
            "github": GitHubModel(self.clock, seed),
            "salesforce": SalesforceModel(self.clock, seed, lambda: self.runtime),
            "hubspot": HubSpotModel(self.clock, seed, lambda: self.runtime),
        }
        for api, model in self.models.items():
            if api in counts:
                model.seed(objects, counts[api])
            else:
                model.seed(objects)
        self.faults.clear()
        self.limiter.reset()
        self.webhooks.clear()
        self.stats.clear()
        self.sf_cursors = Cursors()
        self.sf_sessions = Sessions(lambda: self.clock.now(), lambda: self.runtime["salesforce_session_lifetime_s"],
                                    self.config.credentials.salesforce)

    def seed_aged(self, api: str, counts: Mapping[str, int], start_s: int, end_s: int) -> int:
        """Add history created in [start_s, end_s], older than the event retention, without any event;
        returns how many objects were created."""
        self._check_counts({api: counts})
        return self.models[api].seed_aged(counts, start_s, end_s)

    def _check_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Per-collection counts name an API seeded per collection, its collections, and integers >= 0."""
        for api, sizes in counts.items():
            model = self.models.get(api)
            if model is None or not model.seeds_per_collection:
                served = [name for name, each in self.models.items() if each.seeds_per_collection]
                raise ConfigError(f"per-collection counts apply to {', '.join(served)} only, not {api!r}")
            if not isinstance(sizes, Mapping) or any(
                    name not in model.collections or isinstance(size, bool) or not isinstance(size, int) or size < 0
                    for name, size in sizes.items()):
                raise ConfigError(f"{api} counts must map {', '.join(model.collections)} to integers >= 0")

    def token_valid(self, api: str, token: str | None) -> bool:
        """Stripe, GitHub and HubSpot tokens never expire here; a Salesforce token is a session that does."""
        if api == "salesforce":
            return self.sf_sessions.valid(token)
        return token == getattr(self.config.credentials, api)

    def update_config(self, patch: dict[str, Any]) -> dict[str, Any]:
        """Deep-merge an admin patch (ConfigError on unknown keys) and return the effective config."""
        self.runtime = merge_config(self.runtime, patch)
        return self.runtime

    def take_fault(self, api: str, path: str, kind: str):
        """Consume a handler-level fault (repeat_cursor, delete_between_list_and_fetch) if one applies."""
        return self.faults.take(api, path, (kind,))

    def delete_now(self, api: str, collection: str, oid: str) -> None:
        """Delete one object now, with its event and webhook."""
        if self.models[api].delete_now(collection, oid) is not None:
            self.flush_webhooks()

    def commit_due(self) -> None:
        """Commit the transactions whose time has come (Salesforce's long ones), and push what they changed."""
        for model in self.models.values():
            getattr(model, "commit_due", lambda: None)()
        self.flush_webhooks()

    def flush_webhooks(self) -> None:
        """Hand every model's pending webhooks to the dispatcher."""
        for model in self.models.values():
            messages = model.drain_outbox()
            if messages:
                self.webhooks.submit(messages)

    def count(self, api: str, status: int) -> None:
        """Tally one answered request."""
        per_api = self.stats.setdefault(api, {})
        per_api[str(status)] = per_api.get(str(status), 0) + 1

    def truth(self, api: str, **options: Any) -> dict[str, Any]:
        """Ground truth of one API (Stripe takes `api_version=`)."""
        return self.models[api].truth(**options)

    def all_apis(self) -> tuple[str, ...]:
        """The served APIs."""
        return APIS
