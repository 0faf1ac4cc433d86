"""Apply topic contracts: create missing topics with their configs, detect and repair drift."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from apisync.errors import RetriableError
from apisync.kafka.producer import client_config
from apisync.kafka.topics import TopicSpec

TIMEOUT_S = 30.0


class TopicAdminError(RetriableError):
    """A topic could not be created, described or altered."""


@dataclass(frozen=True, slots=True)
class TopicDrift:
    """How one topic on the broker differs from its declaration."""

    topic: str
    missing: bool = False
    config: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)  # key -> (declared, actual)
    partitions: tuple[int, int] | None = None  # (declared, actual) when the broker has fewer

    def describe(self) -> list[str]:
        """Readable lines, one per difference."""
        if self.missing:
            return [f"{self.topic}: missing"]
        lines = [f"{self.topic}: {key} is {actual!r}, declared {want!r}"
                 for key, (want, actual) in sorted(self.config.items())]
        if self.partitions:
            want, actual = self.partitions
            lines.append(f"{self.topic}: {actual} partitions, declared {want} (not repaired: adding "
                         f"partitions moves keys; recreate the topic or raise the declaration)")
        return lines


@dataclass(frozen=True, slots=True)
class EnsureReport:
    """What ensure() did, and what it could not repair."""

    created: tuple[str, ...] = ()
    altered: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # topic -> config keys set
    unrepaired: tuple[TopicDrift, ...] = ()

    def describe(self) -> list[str]:
        """Readable lines for the CLI and task logs."""
        lines = [f"created {name}" for name in self.created]
        lines += [f"altered {name}: {', '.join(keys)}" for name, keys in sorted(self.altered.items())]
        lines += [line for drift in self.unrepaired for line in drift.describe()]
        return lines or ["all topics match their declarations"]


def diff_config(declared: Mapping[str, str], actual: Mapping[str, str | None]) -> dict[str, tuple[str, str | None]]:
    """Declared keys whose broker value differs: {key: (declared, actual)}; undeclared keys are ignored."""
    return {key: (want, actual.get(key)) for key, want in declared.items() if actual.get(key) != want}


def drift_of(spec: TopicSpec, partitions: int | None, actual: Mapping[str, str | None]) -> TopicDrift | None:
    """Compare one spec with what the broker reports (partitions None = topic missing)."""
    if partitions is None:
        return TopicDrift(spec.name, missing=True)
    config = diff_config(spec.config, actual)
    short = (spec.partitions, partitions) if partitions < spec.partitions else None
    if not config and not short:
        return None
    return TopicDrift(spec.name, config=config, partitions=short)


def existing_partitions(admin: AdminClient, timeout: float = TIMEOUT_S, attempts: int = 10,
                        sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Partition count of every topic on the cluster, waiting out topics that are still settling."""
    for attempt in range(attempts):
        try:
            metadata = admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise TopicAdminError(f"cannot list topics: {_reason(exc)}") from None
        # A just-created topic reports LEADER_NOT_AVAILABLE (and no partitions) for a moment.
        settling = [t for t in metadata.topics.values() if t.error is not None and t.error.retriable()]
        if not settling or attempt == attempts - 1:
            break
        sleep(0.2 * (attempt + 1))
    return {name: len(meta.partitions) for name, meta in metadata.topics.items()
            if meta.error is None or meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART}


def describe_topic_configs(
    admin: AdminClient, names: Iterable[str], timeout: float = TIMEOUT_S, attempts: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, str | None]]:
    """Current config values of each topic; retries briefly while a new topic's metadata spreads."""
    pending, result = list(names), {}
    for attempt in range(attempts):
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in pending]
        futures = admin.describe_configs(resources, request_timeout=timeout) if resources else {}
        failed = []
        for resource, future in futures.items():
            try:
                entries = future.result()
            except KafkaException as exc:
                if attempt == attempts - 1 or not _is_unknown_topic(exc):
                    raise TopicAdminError(f"cannot describe topic {resource.name}: {_reason(exc)}") from None
                failed.append(resource.name)
                continue
            result[resource.name] = {key: entry.value for key, entry in entries.items()}
        if not failed:
            break
        pending = failed
        sleep(0.2 * (attempt + 1))
    return result


def check(admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = TIMEOUT_S) -> list[TopicDrift]:
    """Every difference between the declarations and the broker, changing nothing."""
    specs = list(specs)
    partitions = existing_partitions(admin, timeout)
    present = [spec.name for spec in specs if spec.name in partitions]
    configs = describe_topic_configs(admin, present, timeout)
    drifts = (drift_of(spec, partitions.get(spec.name), configs.get(spec.name, {})) for spec in specs)
    return [drift for drift in drifts if drift is not None]


def ensure(admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = TIMEOUT_S) -> EnsureReport:
    """Create missing topics with their configs and set drifted configs back to the declaration."""
    specs = {spec.name: spec for spec in specs}
    drifts = check(admin, specs.values(), timeout)
    missing = [specs[d.topic] for d in drifts if d.missing]
    drifted = [d for d in drifts if d.config]
    created = create_topics(admin, missing, timeout)
    await_topics(admin, created, timeout)
    changes = {d.topic: {k: want for k, (want, _) in d.config.items()} for d in drifted}
    altered = alter_configs(admin, changes, timeout)
    await_configs(admin, changes, timeout)
    unrepaired = tuple(TopicDrift(d.topic, partitions=d.partitions) for d in drifts if d.partitions)
    return EnsureReport(created=tuple(created), altered=altered, unrepaired=unrepaired)


def create_topics(admin: AdminClient, specs: list[TopicSpec], timeout: float = TIMEOUT_S) -> list[str]:
    """Create topics with their declared configs; one created concurrently by someone else counts as done."""
    if not specs:
        return []
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication_factor,
                    config=dict(s.config)) for s in specs]
    created = []
    for name, future in admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicAdminError(f"cannot create topic {name}: {_reason(exc)}") from None
    return sorted(created)


def alter_configs(
    admin: AdminClient, changes: Mapping[str, Mapping[str, str]], timeout: float = TIMEOUT_S,
) -> dict[str, tuple[str, ...]]:
    """Set the given config keys per topic, leaving every other key untouched."""
    if not changes:
        return {}
    resources = [
        ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in values.items()])
        for topic, values in changes.items()
    ]
    for resource, future in admin.incremental_alter_configs(resources, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            raise TopicAdminError(f"cannot alter configs of topic {resource.name}: {_reason(exc)}") from None
    return {topic: tuple(sorted(values)) for topic, values in changes.items()}


def await_topics(admin: AdminClient, names: Iterable[str], timeout: float = TIMEOUT_S,
                 attempts: int = 50, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until new topics appear in the broker's metadata, so a check right after ensure agrees."""
    pending = set(names)
    for _ in range(attempts):
        pending -= set(existing_partitions(admin, timeout))
        if not pending:
            return
        sleep(0.1)
    raise TopicAdminError(f"created topics not visible on the broker yet: {', '.join(sorted(pending))}")


def await_configs(admin: AdminClient, expected: Mapping[str, Mapping[str, str]], timeout: float = TIMEOUT_S,
                  attempts: int = 50, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until the broker reports the expected values (KRaft applies config changes asynchronously)."""
    pending = {topic: dict(values) for topic, values in expected.items()}
    for _ in range(attempts):
        actual = describe_topic_configs(admin, pending, timeout)
        pending = {t: v for t, v in pending.items() if diff_config(v, actual.get(t, {}))}
        if not pending:
            return
        sleep(0.1)
    raise TopicAdminError(f"config changes not visible on the broker after {attempts} checks: "
                          f"{', '.join(sorted(pending))}")


def admin_client(config: Mapping[str, object]) -> AdminClient:
    """An AdminClient from a client config dict (e.g. the Airflow connection's extra JSON)."""
    return AdminClient(client_config(config))


def _is_unknown_topic(exc: KafkaException) -> bool:
    return exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)
