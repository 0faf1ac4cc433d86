"""Background webhook delivery: signing, shuffling, duplicates and bounded redelivery.

HubSpot events (event "hubspot_event") are merged into JSON arrays of up to 100 per request, as the
Webhooks API v3 sends them ("HubSpot will send multiple events in a single request, up to 100",
https://developers.hubspot.com/docs/api/webhooks), signed with X-HubSpot-Signature-v3; a retried
batch carries its attempt in each event's `attemptNumber` (0 for the first delivery).

Salesforce Outbound Messaging notifications (event "outbound") go to `salesforce_outbound.url`,
batched like the org does (up to `max_batch`, at most 100, per SOAP message), and count as delivered
only when the listener answers `<Ack>true</Ack>` (see salesforce_outbound.py).
"""
from __future__ import annotations

import heapq
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from . import salesforce_outbound
from .model import WebhookMessage
from .signing import (
    github_signature,
    hubspot_signature_v1,
    hubspot_signature_v3,
    standard_webhooks_signature,
    stripe_signature,
)

HUBSPOT_MAX_BATCH = 100


@dataclass(order=True, slots=True)
class _Pending:
    due: float
    seq: int
    url: str = field(compare=False)
    message: WebhookMessage = field(compare=False)
    attempt: int = field(compare=False, default=1)
    generation: int = field(compare=False, default=0)
    weight: int = field(compare=False, default=1)  # submitted messages it carries (a merged batch: several)


def signed_headers(message: WebhookMessage, secrets: list[str], now: int, url: str = "",
                   now_ms: int | None = None) -> dict[str, str]:
    """The provider's headers for one delivery attempt (fresh timestamp each attempt; HubSpot signs the URL)."""
    headers = {"Content-Type": "application/json", "User-Agent": f"api_simulator-{message.api}"}
    if message.api == "stripe":
        if secrets:
            headers["Stripe-Signature"] = stripe_signature(message.body, secrets, now)
    elif message.api == "github":
        headers.update({"X-GitHub-Event": message.event, "X-GitHub-Delivery": message.delivery_id,
                        "X-GitHub-Hook-ID": "1"})
        if secrets:
            headers["X-Hub-Signature-256"] = github_signature(message.body, secrets[0])
    elif message.api == "hubspot":
        stamp = now * 1000 if now_ms is None else now_ms
        headers["X-HubSpot-Request-Timestamp"] = str(stamp)
        if secrets:  # the first secret is the app's client secret
            headers["X-HubSpot-Signature-v3"] = hubspot_signature_v3(secrets[0], "POST", url, message.body, stamp)
            headers["X-HubSpot-Signature"] = hubspot_signature_v1(secrets[0], message.body)
            headers["X-HubSpot-Signature-Version"] = "v1"
    else:
        headers.update({"webhook-id": message.delivery_id, "webhook-timestamp": str(now)})
        if secrets:
            headers["webhook-signature"] = standard_webhooks_signature(message.delivery_id, now, message.body, secrets)
    return headers


class WebhookDispatcher:
    """Delivers queued messages from its own thread so API requests never wait on a receiver."""

    def __init__(self, config: Callable[[], dict[str, Any]], client: httpx.Client | None = None,
                 wall: Callable[[], float] = time.time, seed: int = 0) -> None:
        self._config = config
        self._client = client or httpx.Client(timeout=5.0)
        self._wall = wall
        self._rng = random.Random(seed)
        self._inbox: queue.Queue = queue.Queue()
        self._heap: list[_Pending] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: dict[str, dict[str, int]] = {}
        self._generation = 0
        self.log: list[dict[str, Any]] = []
        # Per stats key, messages submitted since the last reset and those finished (delivered or given up):
        # their difference tells a test that the dispatcher is done, instead of a guess that it went quiet.
        self._counts = threading.Lock()
        self._submitted: dict[str, int] = {}
        self._finished: dict[str, int] = {}

    def submit(self, messages: list[WebhookMessage]) -> None:
        """Queue messages for their API's configured URL (dropped if none is set)."""
        config = self._config()
        for message in messages:
            url = _url_for(message, config)
            if url:
                with self._counts:
                    self._inbox.put((self._generation, url, message))
                    self._submitted[_stats_key(message)] = self._submitted.get(_stats_key(message), 0) + 1
        if messages and self._thread is None:
            self.start()

    def start(self) -> None:
        """Start the delivery thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="webhook-dispatcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread; undelivered messages are dropped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()

    def clear(self) -> None:
        """Drop everything pending (admin reset): queued and scheduled messages of older generations."""
        with self._counts:
            self._generation += 1
            self._submitted, self._finished = {}, {}
        while not self._inbox.empty():
            self._inbox.get_nowait()
        self.stats = {}
        self.log = []

    def pending(self) -> dict[str, int]:
        """Per stats key, messages submitted since the last reset that are neither delivered nor given up."""
        with self._counts:
            return {key: n - self._finished.get(key, 0) for key, n in self._submitted.items()}

    def _finish(self, item: _Pending) -> None:
        with self._counts:
            if item.generation == self._generation:
                key = _stats_key(item.message)
                self._finished[key] = self._finished.get(key, 0) + item.weight

    def _run(self) -> None:
        while not self._stop.is_set():
            self._collect(timeout=0.05)
            now = self._wall()
            batch = []
            while self._heap and self._heap[0].due <= now:
                batch.append(heapq.heappop(self._heap))
            chaos = self._config()["webhook_chaos"]
            if chaos.get("shuffle"):
                self._rng.shuffle(batch)
            for item in self._batch_hubspot(self._batch_outbound(batch)):
                self._deliver(item, chaos)

    def _collect(self, timeout: float) -> None:
        try:
            generation, url, message = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return
        chaos = self._config()["webhook_chaos"]
        # With shuffle on, hold new messages a moment so a batch forms and can be reordered.
        hold = 0.2 if chaos.get("shuffle") else 0.0
        while True:
            self._push(url, message, self._wall() + hold, 1, generation)
            try:
                generation, url, message = self._inbox.get_nowait()
            except queue.Empty:
                return

    def _push(self, url: str, message: WebhookMessage, due: float, attempt: int, generation: int,
              weight: int = 1) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Pending(due, self._seq, url, message, attempt, generation, weight))

    def _deliver(self, item: _Pending, chaos: dict[str, Any]) -> None:
        if item.generation != self._generation:
            return  # queued before an admin reset
        copies = 2 if self._rng.random() < (chaos.get("duplicate_rate") or 0.0) else 1
        ok = False
        for _ in range(copies):
            ok = self._post(item) or ok
        if not ok and item.attempt < int(chaos.get("max_attempts") or 1):
            backoff = float(chaos.get("retry_base_s") or 0.2) * (2 ** (item.attempt - 1))
            self._push(item.url, item.message, self._wall() + backoff, item.attempt + 1, item.generation,
                       item.weight)
        else:
            self._finish(item)

    def _batch_outbound(self, batch: list[_Pending]) -> list[_Pending]:
        """Due Outbound Messaging notifications merged into SOAP messages of at most max_batch."""
        notes = [item for item in batch if item.message.event == "outbound"]
        if not notes:
            return batch
        config = self._config()["salesforce_outbound"]
        size = max(1, min(int(config.get("max_batch") or 100), 100))
        merged = []
        for start in range(0, len(notes), size):
            group = notes[start:start + size]
            body = salesforce_outbound.envelope(config["organization_id"], "https://apisync-sim.my.salesforce.com",
                                                [item.message.body.decode() for item in group])
            message = WebhookMessage("salesforce", body, "outbound_batch", group[0].message.delivery_id)
            merged.append(_Pending(group[0].due, group[0].seq, group[0].url, message, 1, group[0].generation,
                                   sum(item.weight for item in group)))
        return [item for item in batch if item.message.event != "outbound"] + merged

    @staticmethod
    def _batch_hubspot(batch: list[_Pending]) -> list[_Pending]:
        """Due HubSpot events merged into JSON arrays of at most 100 (in the batch's, maybe shuffled, order)."""
        events = [item for item in batch if item.message.event == "hubspot_event"]
        if not events:
            return batch
        merged = []
        for start in range(0, len(events), HUBSPOT_MAX_BATCH):
            group = events[start:start + HUBSPOT_MAX_BATCH]
            body = b"[" + b",".join(item.message.body for item in group) + b"]"
            message = WebhookMessage("hubspot", body, "hubspot_batch", group[0].message.delivery_id)
            merged.append(_Pending(group[0].due, group[0].seq, group[0].url, message, 1, group[0].generation,
                                   sum(item.weight for item in group)))
        return [item for item in batch if item.message.event != "hubspot_event"] + merged

    def _post(self, item: _Pending) -> bool:
        message = item.message
        if message.event == "outbound_batch":
            return self._post_soap(item)
        if message.event == "hubspot_batch" and item.attempt > 1:
            events = [{**event, "attemptNumber": item.attempt - 1} for event in orjson.loads(message.body)]
            message = WebhookMessage(message.api, orjson.dumps(events), message.event, message.delivery_id)
        secrets = list((self._config()["webhooks"].get(message.api) or {}).get("secrets") or [])
        wall = self._wall()
        headers = signed_headers(message, secrets, int(wall), item.url, int(wall * 1000))
        counts = self.stats.setdefault(message.api, {"delivered": 0, "failed": 0, "attempts": 0})
        counts["attempts"] += 1
        try:
            status = self._client.post(item.url, content=message.body, headers=headers).status_code
        except httpx.HTTPError:
            status = 0
        ok = 200 <= status < 300
        counts["delivered" if ok else "failed"] += 1
        self.log.append({"api": message.api, "delivery_id": message.delivery_id, "event": message.event,
                         "attempt": item.attempt, "status": status})
        del self.log[:-1000]
        return ok

    def _post_soap(self, item: _Pending) -> bool:
        """One Outbound Message; delivered only if the answer carries Ack true."""
        counts = self.stats.setdefault("salesforce_outbound", {"delivered": 0, "failed": 0, "attempts": 0})
        counts["attempts"] += 1
        try:
            answer = self._client.post(item.url, content=item.message.body, headers=salesforce_outbound.HEADERS)
            status, ok = answer.status_code, salesforce_outbound.acknowledged(answer.status_code, answer.content)
        except httpx.HTTPError:
            status, ok = 0, False
        counts["delivered" if ok else "failed"] += 1
        self.log.append({"api": "salesforce_outbound", "delivery_id": item.message.delivery_id,
                         "event": item.message.event, "attempt": item.attempt, "status": status})
        del self.log[:-1000]
        return ok


def _stats_key(message: WebhookMessage) -> str:
    """Outbound Messaging counts apart from Salesforce's other webhooks, as in `stats`."""
    return "salesforce_outbound" if message.event in ("outbound", "outbound_batch") else message.api


def _url_for(message: WebhookMessage, config: dict[str, Any]) -> str | None:
    """Outbound Messaging notifications go to their own endpoint; everything else to the API's webhook URL."""
    if message.event == "outbound":
        return (config.get("salesforce_outbound") or {}).get("url")
    return (config["webhooks"].get(message.api) or {}).get("url")
