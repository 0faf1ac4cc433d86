"""A safe Kafka producer: idempotent, acks=all, Java-compatible partitioning, checked delivery reports."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import confluent_kafka
import orjson
from confluent_kafka import KafkaError, KafkaException

from apisync.errors import FatalError, RetriableError

log = logging.getLogger(__name__)

# Non-negotiable: a different value would break ordering, durability or key placement.
REQUIRED = {"enable.idempotence": "true", "acks": "all", "partitioner": "murmur2_random"}
_EQUIVALENT = {"acks": {"all", "-1"}, "enable.idempotence": {"true", "1"}}
DEFAULTS = {"linger.ms": 20, "compression.type": "lz4"}
# A transaction's commit fails when any of its messages failed, so its producer asks librdkafka for
# failure reports only: a report per acknowledged message was a Python callback per message (~7% of
# the normalizer's time). on_delivery callbacks of a transactional producer therefore see failures only.
TRANSACTIONAL_DEFAULTS = {"delivery.report.only.error": True}
POLL_EVERY = 500  # serve delivery reports every so many messages (flush serves the rest)
# How long an abort waits for the messages in flight to be delivered before it aborts (see Producer._abort).
ABORT_FLUSH_S = 10.0  # bounded: with the broker gone, abort_transaction waits for it anyway
# Settings whose values are secrets: passwords, keys, tokens, and sasl.oauthbearer.config, which may carry a
# client secret (e.g. "clientSecret=...").
_SECRET_WORDS = ("password", "secret", "jaas", "token", "ssl.key", "ssl_key", "credential", "oauthbearer.config")

Headers = Mapping[str, str | bytes] | list[tuple[str, str | bytes]] | None


class ProducerConfigError(FatalError, ValueError):
    """The client config is unusable or would weaken a delivery guarantee."""


class DeliveryError(RetriableError):
    """Kafka did not acknowledge one or more messages."""


class TransactionError(RetriableError):
    """A Kafka transaction failed; nothing from it is visible to read_committed consumers."""


@dataclass(slots=True)
class Outgoing:
    """One message to produce (not frozen, because a frozen dataclass is slower to make and a backfill makes
    one per object; treat it as immutable)."""

    topic: str
    key: str | bytes | None
    value: Any  # bytes pass through, None is a tombstone, anything else becomes JSON
    headers: Headers = None


@dataclass(frozen=True, slots=True)
class _Failure:
    topic: str
    key: str
    reason: str


def is_secret_key(key: str) -> bool:
    """Whether a client setting's value is a secret (never logged or shown)."""
    return any(word in key.lower() for word in _SECRET_WORDS)


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with secret values masked, safe to log."""
    return {k: ("***" if is_secret_key(k) else v) for k, v in config.items()}


def client_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a plain client config dict (e.g. Airflow's kafka connection extra), checked for bootstrap.servers."""
    if not isinstance(config, Mapping):
        raise ProducerConfigError("Kafka client config must be a mapping of librdkafka settings")
    if not str(config.get("bootstrap.servers") or "").strip():
        raise ProducerConfigError("Kafka client config has no 'bootstrap.servers'")
    return dict(config)


def producer_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The full producer config: the caller's settings, our defaults, and the required safety settings."""
    caller = client_config(config)
    merged = {**DEFAULTS, **(TRANSACTIONAL_DEFAULTS if caller.get("transactional.id") else {}), **caller}
    for key, value in REQUIRED.items():
        given = str(merged.get(key, value)).strip().lower()
        if given not in _EQUIVALENT.get(key, {value}):
            raise ProducerConfigError(f"producer setting {key!r} must be {value!r} (apisync relies on it)")
        merged[key] = value
    return merged


def encode_key(key: str | bytes | None) -> bytes | None:
    """Keys are UTF-8 strings on the wire."""
    return key.encode("utf-8") if isinstance(key, str) else key


def encode_value(value: Any) -> bytes | None:
    """bytes untouched, None stays a tombstone, everything else is serialized with orjson."""
    if value is None or isinstance(value, bytes):
        return value
    return orjson.dumps(value)


class Producer:
    """Wrapper over confluent_kafka.Producer that never loses a failed delivery silently."""

    def __init__(self, config: Mapping[str, Any], *, client_factory: Callable[[dict], Any] = confluent_kafka.Producer,
                 clock: Callable[[], float] = time.monotonic, queue_full_timeout: float = 60.0) -> None:
        conf = producer_config(config)
        self.transactional_id: str | None = conf.get("transactional.id")
        self._failures: list[_Failure] = []
        self._clock = clock
        self._queue_full_timeout = queue_full_timeout
        self._fatal: KafkaError | None = None
        self._unpolled = 0
        # A weak reference: a bound method here would tie the client to this wrapper in a cycle, keeping
        # librdkafka handles (and their reconnect logging) alive until the cyclic GC runs.
        on_error, on_failure = weakref.WeakMethod(self._on_error), weakref.WeakMethod(self._record_failure)
        # Failures go to one client-wide delivery callback: a callback argument per produce() call costs
        # a third of the call; callers that want their own reports (produce_reported) still pass one.
        self._client = client_factory({**conf, "error_cb": lambda err: (m := on_error()) and m(err),
                                       "on_delivery": lambda err, msg: (m := on_failure()) and m(err, msg)})
        if self.transactional_id:
            self._txn_call("initialize transactions", self._client.init_transactions, 30.0)
        log.debug("kafka producer created: %s", redacted(conf))

    def produce(self, topic: str, key: str | bytes | None, value: Any, headers: Headers = None,
                on_delivery: Callable[[Any], None] | None = None) -> None:
        """Queue one message; delivery is confirmed (or raised) by the next flush(). In a transactional
        producer on_delivery hears of failures only (see TRANSACTIONAL_DEFAULTS)."""
        # The hot path of every writer: one shared failure callback unless the caller wants its own.
        self._produce(topic, key, value, headers, None if on_delivery is None else self._reporter(on_delivery))

    def produce_reported(self, topic: str, key: str | bytes | None, value: Any, headers: Headers,
                         on_report: Callable[[str | None], None], *, wait_for_room: bool = True) -> None:
        """Queue one message whose delivery report goes to on_report alone: None once Kafka acknowledged
        it, else the reason it failed. flush() neither waits for it specially nor raises for it; the
        reports are served by poll() (or flush()). With wait_for_room=False a full local queue raises
        BufferError at once (nothing queued) instead of polling until there is room: for an event loop."""
        self._produce(topic, key, value, headers, lambda err, _msg: on_report(None if err is None else err.str()),
                      wait_for_room)

    def poll(self, timeout: float) -> int:
        """Serve delivery reports that are ready, waiting up to timeout seconds for one; how many were served."""
        return self._client.poll(timeout)

    def _produce(self, topic: str, key: str | bytes | None, value: Any, headers: Headers,
                 report: Callable[[KafkaError | None, Any], None] | None, wait_for_room: bool = True) -> None:
        """Queue one message; its report goes to `report`, or to the client-wide failure callback (None)."""
        if headers:
            headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        encoded_key, encoded_value = encode_key(key), encode_value(value)
        deadline = None
        while True:
            try:
                if report is None and not headers:  # the fast form (see send_encoded)
                    self._client.produce(topic, encoded_value, encoded_key)
                else:
                    self._client.produce(topic, encoded_value, encoded_key, on_delivery=report, headers=headers)
                break
            except KafkaException as exc:
                self._fatal = exc.args[0] if exc.args[0].fatal() else None
                if self._fatal is None:
                    raise DeliveryError(f"cannot produce to topic {topic}: {exc.args[0].str()}") from None
                self._raise_fatal()
            except BufferError:
                if not wait_for_room:
                    raise
                # The local queue is full: serve delivery reports to make room, then retry.
                deadline = deadline or self._clock() + self._queue_full_timeout
                if self._clock() >= deadline:
                    raise DeliveryError(f"local produce queue stayed full for {self._queue_full_timeout:.0f}s "
                                        f"(topic {topic}); is the broker reachable?") from None
                self._client.poll(0.1)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:  # a poll per message cost as much as the produce itself
            self._unpolled = 0
            self._client.poll(0)

    def send(self, message: Outgoing) -> None:
        """Queue an Outgoing message."""
        self.produce(message.topic, message.key, message.value, message.headers)

    def send_encoded(self, messages: Iterable[tuple[str, bytes | None, bytes | None, list | None]]) -> None:
        """Queue (topic, key, value, headers) messages already in wire form, as produce() would.

        The normalizer's hot loop: several messages per record share one encoded key, and the checks of
        produce() (encoding, headers, the full-queue retry) run only when the plain produce fails."""
        produce, unpolled = self._client.produce, self._unpolled
        for topic, key, value, headers in messages:
            try:
                # Positional, and no headers argument unless there are headers: confluent-kafka parses
                # `headers=None` and keywords slowly, and this call runs once per message.
                if headers is None:
                    produce(topic, value, key)
                else:
                    produce(topic, value, key, headers=headers)
            except (KafkaException, BufferError):  # full queue or an error: the careful path retries or raises
                self._unpolled = unpolled
                self._produce(topic, key, value, headers, None)
                unpolled = self._unpolled  # _produce counted it
                continue
            unpolled += 1
            if unpolled >= POLL_EVERY:
                unpolled = 0
                self._client.poll(0)
        self._unpolled = unpolled

    def flush(self, timeout: float = 60.0) -> None:
        """Wait for every queued message; raise one DeliveryError if any failed since the last flush."""
        try:
            remaining = self._client.flush(timeout)
        except (KafkaException, SystemError) as exc:
            # confluent-kafka raises a fatal error (e.g. fenced) out of flush, sometimes wrapped in a
            # SystemError when a delivery callback ran after it was set.
            self._fatal = _kafka_error(exc) or self._fatal
            if self._fatal is None:
                raise
        failures, self._failures = self._failures, []
        if self._fatal is not None:
            self._raise_fatal()
        if failures:
            first = failures[0]
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DeliveryError(f"delivery to topic {first.topic} failed for key {first.key!r}: {first.reason}{more}")
        if remaining:
            raise DeliveryError(f"{remaining} messages still unacknowledged after {timeout:.0f}s; "
                                "is the broker reachable?")

    def _raise_fatal(self) -> None:
        error = TransactionError if self.transactional_id else DeliveryError
        who = f"producer {self.transactional_id!r}" if self.transactional_id else "producer"
        raise error(f"{who} is unusable: {self._fatal.str()}{_fenced_hint(self._fatal)}") from None

    def _on_error(self, err: KafkaError) -> None:
        # Runs inside librdkafka's callback loop: record, never raise here.
        if err.fatal():
            self._fatal = err
        log.log(logging.WARNING if err.fatal() else logging.INFO, "kafka client error: %s", err.str())

    def _record_failure(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            key = msg.key()
            shown = key.decode("utf-8", "replace") if key is not None else "None"
            self._failures.append(_Failure(msg.topic(), shown, err.str()))

    def _reporter(self, callback: Callable[[Any], None]):
        def report(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                self._record_failure(err, msg)
            else:
                callback(msg)
        return report

    @contextmanager
    def transaction(self) -> Iterator[Producer]:
        """begin; the block's messages; flush + commit — or abort (and re-raise) on any exception."""
        if not self.transactional_id:
            raise ProducerConfigError("transaction() needs 'transactional.id' in the producer config")
        self._txn_call("begin transaction", self._client.begin_transaction)
        try:
            yield self
            self.flush()
            self._commit()
        except BaseException:
            self._abort()
            raise

    def send_offsets_to_transaction(self, positions: list, group_metadata: Any, timeout: float = 30.0) -> None:
        """Add consumed offsets to the open transaction (consume -> produce -> commit)."""
        self._txn_call("send offsets to transaction", self._client.send_offsets_to_transaction,
                       positions, group_metadata, timeout)

    def _commit(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                self._client.commit_transaction(60.0)
                return
            except KafkaException as exc:
                # A retriable commit error (e.g. a timeout) may simply be repeated, per librdkafka.
                if not exc.args[0].retriable() or attempt == attempts - 1:
                    raise self._txn_error("commit transaction", exc.args[0]) from None

    def _abort(self) -> None:
        try:
            # Deliver what is in flight first: an abort sent while the transaction's AddPartitionsToTxn is still
            # pending can be answered INVALID_TXN_STATE, which leaves the producer fatally broken
            # (confluentinc/librdkafka#4849, seen under load when the normalizer aborts a round right after its
            # first chunk). The aborted messages stay invisible to read_committed consumers either way.
            self._client.flush(ABORT_FLUSH_S)
            self._client.abort_transaction(60.0)
            # Purged messages report failures of their own: they belong to the aborted page.
            self._client.poll(0)
        except (KafkaException, SystemError) as exc:
            # The original error matters more; a failed abort leaves a fatal state the next call reports.
            log.warning("abort of transaction %r failed: %s", self.transactional_id, exc)
        self._failures = []

    def _txn_call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except KafkaException as exc:
            raise self._txn_error(what, exc.args[0]) from None

    def _txn_error(self, what: str, err: KafkaError) -> TransactionError:
        return TransactionError(f"cannot {what} for transactional.id {self.transactional_id!r}: "
                                f"{err.str()}{_fenced_hint(err)}")

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (raising on failure)."""
        self.flush(timeout)

    def __len__(self) -> int:
        return len(self._client)

    def __repr__(self) -> str:
        return f"Producer(transactional_id={self.transactional_id!r})"


class DeliveryPoller:
    """One thread serving a producer's delivery reports while messages handed to it await theirs.

    confluent-kafka runs delivery callbacks only inside poll() or flush(); flush() waits for the whole
    queue, so a caller that wants only its own report needs someone else polling. This is the poll
    thread of confluent-kafka's asyncio example. `confluent_kafka.aio.AIOProducer` (2.16.1) does not fit:
    it refuses message headers (the receiver stores the signature headers) and would bypass the checked
    config of `Producer`. The thread ends after `idle_polls` polls with nothing outstanding and the next
    `ensure_polling()` starts one, so an app needs no shutdown hook (the receiver is also mounted inside
    Airflow's api-server) and an idle receiver holds no thread.
    """

    def __init__(self, producer: Any, poll_s: float = 0.1, idle_polls: int = 20) -> None:
        self._producer = producer
        self._poll_s = poll_s
        self._idle_polls = idle_polls
        self._outstanding = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def tracked(self, on_report: Callable[[str | None], None]) -> Callable[[str | None], None]:
        """on_report, counted as outstanding until it ran (call it yourself if its message was not queued)."""
        with self._lock:
            self._outstanding += 1

        def report(error: str | None) -> None:
            with self._lock:
                self._outstanding -= 1
            on_report(error)
        return report

    def ensure_polling(self) -> None:
        """Start the polling thread if reports are outstanding and none runs (after a produce)."""
        with self._lock:
            if self._outstanding and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kafka-delivery-poller", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        idle = 0
        while True:
            with self._lock:
                idle = 0 if self._outstanding else idle + 1
                if idle > self._idle_polls:
                    self._thread = None
                    return
            try:
                self._producer.poll(self._poll_s)
            except Exception:  # keep serving the others' reports; their waits time out if this persists
                log.exception("serving Kafka delivery reports failed")
                time.sleep(self._poll_s)


def _kafka_error(exc: BaseException | None) -> KafkaError | None:
    """The KafkaError carried by exc or its cause, if any."""
    while exc is not None:
        if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
            return exc.args[0]
        exc = exc.__cause__
    return None


def _fenced_hint(err: KafkaError) -> str:
    fenced = err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)
    return " (fenced: another worker now owns this transactional.id)" if fenced else ""
