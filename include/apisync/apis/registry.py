"""The registry of API specs. It knows no API by name: each one declares an `ApiSpec` in
`apisync.apis.<api>` and is registered once in `apisync.apis`; a test (or a plugin) may register
its own with `register`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apisync.http.retry import HTTP_SIGNALS, ApiSignals


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """How one API pushes changes to apisync."""

    scheme: Callable[..., Any]  # a `webhooks.signatures` scheme class: scheme(secrets, tolerance_s)
    parse: Callable[..., Any]  # (body, headers, synced_at, **options) -> Observation
    delivery_header: str | None = None  # header naming the delivery (else webhook-id, else the body's id)
    # A provider that batches several changes into one delivery: body -> one body per change. The
    # receiver stores each as its own `<api>.webhooks` message (keyed by its record), all acked first.
    split: Callable[[bytes], list[bytes]] | None = None


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """Everything apisync knows about one API, in one declaration."""

    name: str
    collections: tuple[str, ...]  # singular object names, as in record keys and topic names
    build_source: Callable[[Any], Any]  # ApiSettings -> Source
    default_rate_per_s: float  # the account's request budget when the connection sets none
    signals: ApiSignals = HTTP_SIGNALS  # what its responses say beyond HTTP (rate limits, quota, errors)
    webhook: WebhookSpec | None = None  # None: no push channel, polling only
    rules: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # {collection: [rule, ...]}
    # Field names of its objects: the preset dictionary that compresses its ledger states
    # (`apisync.ledger_states`). NEVER change them once a ledger holds data: a state decodes only with
    # the exact bytes it was packed with.
    ledger_fields: tuple[str, ...] = ()


_SPECS: dict[str, ApiSpec] = {}


def register(spec: ApiSpec) -> ApiSpec:
    """Add (or replace) an API: the catalog, topics, CLI, DAGs, receiver and normalizer pick it up."""
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget an API (for tests that registered one of their own)."""
    _SPECS.pop(name, None)


def spec_for(api: str) -> ApiSpec:
    """The spec of `api`; a one-line error naming the known APIs otherwise."""
    try:
        return _SPECS[api]
    except KeyError:
        raise KeyError(f"unknown api {api!r}; known: {', '.join(_SPECS) or 'none'}") from None


def all_specs() -> tuple[ApiSpec, ...]:
    """Every registered API, in registration order."""
    return tuple(_SPECS.values())
