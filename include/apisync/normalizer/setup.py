"""Opening a normalizer: its Kafka clients, the output-topic check, the ledger, the re-fetch client;
`normalize` is the entry point of the CLI and the Airflow task."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer

from apisync import registry
from apisync.errors import RetriableError
from apisync.events import Observation
from apisync.fence import LEDGER_PREFIX, VersionFence
from apisync.kafka.connect import check_kafka
from apisync.kafka.normalizer_clients import consumer_config, producer_config
from apisync.kafka.producer import Producer
from apisync.ledger import ensure_ledger
from apisync.metrics import NULL_METRICS, Metrics
from apisync.normalizer.loop import DEFAULT_BATCH_SIZE, Normalizer
from apisync.normalizer.stats import NormalizerStats
from apisync.refetch_plan import request_bound
from apisync.rules import Rule

log = logging.getLogger("apisync.normalizer")


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a normalizer process.

    A batch allocates tens of short-lived containers per observation: at Python's default gen-0
    threshold (700) a full collection, which walks every object imported at start-up, ran every
    ~1,500 observations, about a tenth of the normalizer's time. What start-up left behind is frozen
    out of collections, and gen 0 is collected every 50,000 allocations (the normalizer itself makes
    no reference cycles, so this only delays freeing the rare ones)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class NormalizerSetupError(RetriableError):
    """The normalizer cannot start (e.g. its output topics do not exist)."""


def output_topics(api: str, rules: Mapping[str, Sequence[Rule]], namespace: str = "") -> list[str]:
    """Every topic the normalizer of one api may write to."""
    stem = f"{namespace}{api}"
    names = [f"{stem}.records", f"{stem}.events", f"{stem}.dlq"]
    for collection in registry.COLLECTIONS.get(api, ()):
        kinds = [*registry.BASE_EVENT_TYPES, *(r.event for r in rules.get(collection, ()))]
        names += [f"{stem}.{collection}"] + [f"{stem}.{collection}.{kind}" for kind in dict.fromkeys(kinds)]
    return names


def missing_topics(client: Any, names: Sequence[str], timeout: float = 30.0) -> list[str]:
    """Names absent from the cluster; a produce to one would fail every transaction."""
    existing = set(client.list_topics(timeout=timeout).topics)
    return [name for name in names if name not in existing]


def open_normalizer(api: str, kafka_config: Mapping[str, Any], redis_client: Any, *, instance: str = "0",
                    namespace: str = "", ledger_prefix: str = LEDGER_PREFIX,
                    refetch: Callable[[Observation], Observation] | None = None, **options: Any) -> Normalizer:
    """A Normalizer with its own consumer and transactional producer (init_transactions fences zombies)."""
    check_kafka(kafka_config)  # a refused login fails now, in one line
    consumer = Consumer(consumer_config(api, kafka_config, instance, namespace))
    missing = missing_topics(consumer, output_topics(api, registry.default_rules(api), namespace))
    if missing:
        consumer.close()
        raise NormalizerSetupError(f"normalizer {api}: topics missing: {', '.join(missing)}; "
                                   f"create them with `python -m apisync topics ensure` (rule event topics included)")
    def recover() -> str:
        return ensure_ledger(api, kafka_config, redis_client, namespace=namespace, ledger_prefix=ledger_prefix)

    recover()  # a ledger Redis lost is rebuilt before anything is fenced
    producer = Producer(producer_config(api, kafka_config, instance, namespace))
    return Normalizer(api, consumer, producer, VersionFence(redis_client, ledger_prefix), refetch=refetch,
                      namespace=namespace, recover_ledger=recover, **options)


def normalize(api: str, kafka_config: Mapping[str, Any], redis_url: str, max_seconds: float | None = None,
              instance: str = "0", api_settings: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
              until_idle: bool = False, metrics: Metrics = NULL_METRICS) -> NormalizerStats:
    """Entry point for `python -m apisync normalize <api> [--max-seconds N]` and the Airflow task.

    With `until_idle` it returns once every partition it owns is read to its end (an asset-triggered
    run), else after max_seconds (None: never). With `api_settings` (the API connection), thin webhooks
    and equal-version ties are re-fetched from the API on the webhook lane of the shared budget;
    without, thin webhooks dead-letter.
    """
    with opened_normalizer(api, kafka_config, redis_url, instance=instance, api_settings=api_settings,
                           batch_size=batch_size, metrics=metrics) as normalizer:
        return normalizer.run(max_seconds=max_seconds, stop_when_idle=until_idle)


@contextlib.contextmanager
def opened_normalizer(api: str, kafka_config: Mapping[str, Any], redis_url: str, *, instance: str = "0",
                      api_settings: Any = None, batch_size: int = DEFAULT_BATCH_SIZE,
                      metrics: Metrics = NULL_METRICS, **options: Any) -> Iterator[Normalizer]:
    """A ready Normalizer (re-fetch client included), closed on the way out; `options` go to
    `open_normalizer` (namespace, ledger_prefix, poll_timeout...)."""
    import redis

    tune_gc()  # every caller is a normalizer process (CLI, follow service, Airflow task)
    with contextlib.ExitStack() as stack:
        # the caller's options win (e.g. a test's smaller max_refetch_requests)
        options = {**refetch_options(api, kafka_config, redis_url, api_settings, stack, metrics), **options}
        normalizer = open_normalizer(api, kafka_config, redis.Redis.from_url(redis_url), instance=instance,
                                     batch_size=batch_size, metrics=metrics, **options)
        stack.callback(normalizer.close)
        yield normalizer


def refetch_options(api: str, kafka_config: Mapping[str, Any], redis_url: str, api_settings: Any,
                    stack: contextlib.ExitStack, metrics: Metrics = NULL_METRICS) -> dict[str, Any]:
    """`refetch` and `webhook_options` from the API's source, with a client on the webhook lane."""
    if api_settings is None:
        log.warning("normalizer %s: no API connection, so thin webhooks go to %s.dlq and equal-version ties "
                    "are decided by arrival order", api, api)
        return {}
    from apisync.api_client import api_client
    from apisync.registry import build_source, spec_for
    from apisync.settings import SyncSettings
    from apisync.webhooks.refetch import source_refetcher

    source = build_source(api_settings)
    client, _limiter = stack.enter_context(api_client(SyncSettings(kafka_config, redis_url, api_settings),
                                                      "webhook", source, metrics))
    rate = api_settings.rate_per_s or spec_for(api_settings.api).default_rate_per_s  # as api_client reads it
    return {"refetch": source_refetcher(source, client), "webhook_options": getattr(source, "webhook_options", None),
            "max_refetch_requests": request_bound(rate)}
