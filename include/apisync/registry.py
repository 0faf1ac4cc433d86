"""The registry of API specs, at the bottom of the core: it knows no API by name and imports none.

Each API declares an `ApiSpec` in its package (`apisync.apis.<api>`), registered once by importing
`apisync.apis` (what every entry point does: the CLI, the receiver, the Airflow plugin, the tests). A
process that imports only generic modules (a script calling `normalize`, a worker) gets them on its first
lookup: the registry loads `BUILTIN_APIS` by name then, like a plugin, so it never imports an API itself.
A test (or a plugin) may register its own with `register`. Everything generic (topics, CLI choices, DAGs,
the receiver, the normalizer, the sync runs) asks this module, never an API's package.

`APIS` and `COLLECTIONS` are live views of the registry, so an API registered later (a plugin, a test)
appears in topics, CLI choices, DAGs and the normalizer without touching them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apisync.connections import ConnectionSpec
from apisync.http.retry import HTTP_SIGNALS, ApiSignals
from apisync.rules import Rule, rules_from_config


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    """How one API pushes changes to apisync."""

    scheme: Callable[..., Any]  # a signature scheme class (see `webhooks.signatures`): scheme(secrets, tolerance_s)
    parse: Callable[..., Any]  # (body, headers, synced_at, **options) -> Observation
    delivery_header: str | None = None  # header naming the delivery (else webhook-id, else the body's id)
    # A provider that batches several changes into one delivery: body -> one body per change. The
    # receiver stores each as its own `<api>.webhooks` message (keyed by its record), all acked first.
    split: Callable[[bytes], list[bytes]] | None = None
    # Request headers (lower-case) its parser reads or an operator wants next to the raw body; the
    # receiver keeps those of every registered API besides its generic ones (content-type, Standard Webhooks').
    kept_headers: tuple[str, ...] = ()
    # Receiver options of its own, read from the environment: env -> options, which the receiver keeps as
    # `WebhookSettings.api_options[<api>]` for `extra_routes`.
    options_from_env: Callable[[Mapping[str, str]], Mapping[str, Any]] | None = None
    # And from its connection's extra: extra -> options, joined with the environment's (a tuple value adds
    # its items after the environment's; any other fills in only where the environment sets none).
    options_from_connection: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    # Routes of its own beside `POST /webhooks/<api>` (e.g. a SOAP endpoint): called once per app as
    # extra_routes(app, context), the context being the receiver's `ReceiverContext` for this API.
    extra_routes: Callable[[Any, Any], None] | None = None
    # When a setting would spare the re-fetch of a thin webhook (e.g. a version pinned apart from the
    # provider's): (raw body, parser options) -> the line that says so, or None. Logged once per normalizer run.
    refetch_hint: Callable[[bytes, Mapping[str, Any]], str | None] | None = None


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """Everything apisync knows about one API, in one declaration."""

    name: str
    collections: tuple[str, ...]  # singular object names, as in record keys and topic names
    build_source: Callable[[Any], Any]  # ApiSettings -> Source
    default_rate_per_s: float  # the account's request budget when the connection sets none
    signals: ApiSignals = HTTP_SIGNALS  # what its responses say beyond HTTP (rate limits, quota, errors)
    webhook: WebhookSpec | None = None  # None: no push channel, polling only
    # How its account is given: connection form fields, base URL default, provider types, env variables.
    connection: ConnectionSpec = field(default_factory=ConnectionSpec)
    rules: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # {collection: [rule, ...]}
    # Field names of its objects: the preset dictionary that compresses its ledger states
    # (`apisync.ledger_states`). NEVER change them once a ledger holds data: a state decodes only with
    # the exact bytes it was packed with.
    ledger_fields: tuple[str, ...] = ()


_SPECS: dict[str, ApiSpec] = {}


# The package that registers the built-in APIs (one line each), loaded by name on the first lookup.
BUILTIN_APIS = "apisync.apis"
_builtins_loaded = False


def _specs() -> dict[str, ApiSpec]:
    """The registered specs, the built-in APIs among them."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: the package's own imports look things up here
        try:
            importlib.import_module(BUILTIN_APIS)
        except BaseException:
            _builtins_loaded = False  # the next lookup raises the same import error, not "unknown api"
            raise
    return _SPECS


def register(spec: ApiSpec) -> ApiSpec:
    """Add (or replace) an API: topics, CLI, DAGs, receiver and normalizer pick it up."""
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget an API (for tests that registered one of their own)."""
    _SPECS.pop(name, None)


def spec_for(api: str) -> ApiSpec:
    """The spec of `api`; a one-line error naming the known APIs otherwise."""
    try:
        return _specs()[api]
    except KeyError:
        raise KeyError(f"unknown api {api!r}; known: {', '.join(_SPECS) or 'none'}") from None


def all_specs() -> tuple[ApiSpec, ...]:
    """Every registered API, in registration order."""
    return tuple(_specs().values())


def build_source(settings: Any) -> Any:
    """The Source of one API account (ApiSettings), built by its spec."""
    return spec_for(settings.api).build_source(settings)


def default_rules(api: str) -> dict[str, tuple[Rule, ...]]:
    """The rules the api's spec declares (`ApiSpec.rules`; empty when it declares none)."""
    return rules_from_config(spec_for(api).rules)


def rule_event_types(api: str) -> dict[str, tuple[str, ...]]:
    """{collection: (rule event type, ...)} so topic contracts can declare `<api>.<coll>.<event>`."""
    return {coll: tuple(r.event for r in rules) for coll, rules in default_rules(api).items()}


def all_rule_event_types(apis: Iterable[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """{api: {collection: (rule event type, ...)}}: pass as `declared_topics(rule_events=...)`."""
    return {api: rule_event_types(api) for api in apis}


class _Apis(Sequence[str]):
    """The registered API names, in registration order."""

    def __getitem__(self, index):  # noqa: ANN001 - int or slice, as for any sequence
        return tuple(_specs())[index]

    def __len__(self) -> int:
        return len(_specs())

    def __repr__(self) -> str:
        return repr(tuple(self))


class _Collections(Mapping[str, tuple[str, ...]]):
    """{api: its collections (singular object names, as in record keys and topic names)}."""

    def __getitem__(self, api: str) -> tuple[str, ...]:
        try:
            return _specs()[api].collections
        except KeyError:
            raise KeyError(api) from None

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_specs()))

    def __len__(self) -> int:
        return len(_specs())


APIS: Sequence[str] = _Apis()
COLLECTIONS: Mapping[str, tuple[str, ...]] = _Collections()

# Event types every collection emits; declared rules add their own per collection.
BASE_EVENT_TYPES: tuple[str, ...] = ("created", "updated", "deleted")
