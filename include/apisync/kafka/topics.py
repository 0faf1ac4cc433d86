"""Topic contracts as code: every apisync topic, its partitions and its configs, declared once."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from apisync import registry

CHECKPOINTS_TOPIC = "apisync.checkpoints"
DEFAULT_PARTITIONS = 6
DEFAULT_REPLICATION_FACTOR = 1
# Events age out by time alone (7 days): a byte cap per partition would delete a large backfill's
# events before slow consumers read them. -1 is Kafka's "no size limit"; a positive value is a disk
# backstop per partition, to be sized above a week's (or a backfill's) events (README, Topics).
DEFAULT_EVENTS_RETENTION_BYTES = -1

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_NAME = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")

# Raw inputs and outputs that age out: a week is enough to replay after an outage.
_DELETE_7D = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
_DLQ = {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
# Compaction never touches the active segment, so roll hourly; tombstones live 10 days (below); a
# short lag keeps the newest versions readable before compaction.
_COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": str(HOUR_MS),
    "min.compaction.lag.ms": str(60_000),
    # every consumer sees the delete, and a ledger rebuilt after Redis lost everything still refuses a
    # stale observation of a deleted object: one can wait 7 days in an input topic after a webhook retry
    # that came up to 3 days late (Stripe retries for 3 days)
    "delete.retention.ms": str(10 * DAY_MS),
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """The declared shape of one topic."""

    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 249:
            raise ValueError(f"invalid topic name {self.name!r}: use dotted lowercase words")
        if self.partitions < 1:
            raise ValueError(f"topic {self.name}: partitions must be >= 1, got {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(f"topic {self.name}: replication factor must be >= 1")
        for key, value in self.config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"topic {self.name}: config {key!r} must map str to str")
        # Freeze the mapping too, so a spec cannot be edited after declaration.
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    @property
    def compacted(self) -> bool:
        """True when the topic keeps the latest value per key."""
        return "compact" in self.config.get("cleanup.policy", "")


@dataclass(frozen=True, slots=True)
class Layout:
    """Cluster-dependent sizing: partitions, replication factor, the events topics' byte backstop."""

    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = DEFAULT_REPLICATION_FACTOR
    events_retention_bytes: int = DEFAULT_EVENTS_RETENTION_BYTES  # per partition; -1: time alone decides

    def __post_init__(self) -> None:
        if self.events_retention_bytes < 1 and self.events_retention_bytes != -1:
            raise ValueError(f"events retention bytes must be -1 (no size limit) or positive, "
                             f"got {self.events_retention_bytes}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Layout:
        """Read APISYNC_PARTITIONS / APISYNC_REPLICATION_FACTOR (e.g. for the 3-broker profile) and
        APISYNC_EVENTS_RETENTION_BYTES (-1 or a per-partition byte backstop)."""
        env = os.environ if env is None else env
        return cls(
            partitions=_env_int(env, "APISYNC_PARTITIONS", DEFAULT_PARTITIONS),
            replication_factor=_env_int(env, "APISYNC_REPLICATION_FACTOR", DEFAULT_REPLICATION_FACTOR),
            events_retention_bytes=_env_bytes(env, "APISYNC_EVENTS_RETENTION_BYTES", DEFAULT_EVENTS_RETENTION_BYTES),
        )

    @property
    def events_config(self) -> dict[str, str]:
        """Configs of every events topic: deleted after 7 days, with this layout's byte backstop."""
        return {**_DELETE_7D, "retention.bytes": str(self.events_retention_bytes)}

    def spec(self, name: str, config: Mapping[str, str], partitions: int | None = None) -> TopicSpec:
        """A TopicSpec sized for this layout."""
        config = dict(config)
        if self.replication_factor > 1:
            # acks=all only protects data if more than one replica must hold it.
            config["min.insync.replicas"] = str(min(2, self.replication_factor))
        return TopicSpec(name, partitions or self.partitions, self.replication_factor, config)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _env_bytes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw != "-1" and (not raw.isdigit() or int(raw) < 1):
        raise ValueError(f"{name} must be -1 (no size limit) or a positive number of bytes, got {raw!r}")
    return int(raw)


def api_topics(api: str, layout: Layout, rule_events: Mapping[str, Iterable[str]] | None = None) -> list[TopicSpec]:
    """Every topic of one API; rule_events maps a collection to its declared rule event types."""
    rule_events = rule_events or {}
    specs = [
        layout.spec(f"{api}.changes", _DELETE_7D),
        layout.spec(f"{api}.webhooks", _DELETE_7D),
        layout.spec(f"{api}.records", _COMPACTED),
        layout.spec(f"{api}.events", layout.events_config),
        layout.spec(f"{api}.dlq", _DLQ),
    ]
    for collection in registry.COLLECTIONS[api]:
        specs.append(layout.spec(f"{api}.{collection}", _COMPACTED))
        types = dict.fromkeys([*registry.BASE_EVENT_TYPES, *rule_events.get(collection, ())])
        specs.extend(layout.spec(f"{api}.{collection}.{kind}", layout.events_config) for kind in types)
    return specs


def checkpoints_topic(layout: Layout) -> TopicSpec:
    """The compacted cursor topic; one partition because it is tiny and always read whole."""
    return layout.spec(CHECKPOINTS_TOPIC, {**_COMPACTED, "min.compaction.lag.ms": "0"}, partitions=1)


def declared_topics(
    layout: Layout | None = None,
    rule_events: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
    apis: Iterable[str] | None = None,
) -> list[TopicSpec]:
    """All apisync topics; rule_events is {api: {collection: [event type, ...]}}, default: the declared rules."""
    layout = layout or Layout.from_env()
    apis = tuple(registry.APIS if apis is None else apis)  # read at call time: APIs may register later
    if rule_events is None:
        rule_events = registry.all_rule_event_types(apis)
    specs = [spec for api in apis for spec in api_topics(api, layout, rule_events.get(api))]
    specs.append(checkpoints_topic(layout))
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"topics declared twice: {', '.join(duplicates)}")
    return specs
