"""The simulated Stripe in-process on a clock the test moves, and a StripeSource run that can crash.

The simulator serves the real API routes (lists newest first, `created` filters, `starting_after` /
`ending_before`, events hidden for a while after their creation, 30-day retention); an httpx
MockTransport hands it the source's requests, so the source walks it as it walks Stripe.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson

from api_simulator.app import create_app
from api_simulator.clock import Clock
from api_simulator.config import SimulatorConfig
from api_simulator.state import Simulator
from apisync.apis.stripe.source import COLLECTIONS, StripeSource
from apisync.events import Observation
from apisync.http import ApiClient
from apisync.registry import spec_for
from apisync.sources import Batch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

EPOCH = 1_790_000_000
KEY = "sk_test_apisync"


class ManualTime:
    """Wall time for the simulator's clock, moved only by the test."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class StripeSim:
    """An in-process simulated Stripe whose clock the test moves."""

    def __init__(self, objects: int = 10, seed: int = 3, lag_s: float = 0.0) -> None:
        self.time = ManualTime(EPOCH)
        self.sim = Simulator(SimulatorConfig(seed=seed, objects=objects), clock=Clock(time_fn=self.time))
        self.sim.update_config({"rate_limits": {"stripe": {"per_second": 1_000_000}}, "stripe_events_lag_s": lag_s})
        self.model = self.sim.models["stripe"]
        # The walks are checked event by event against the object each carries; a sub-resource event
        # carries no customer (its routing to the parent is tested in test_stripe_subresources).
        self.model.subresource_share = 0.0
        self.http = TestClient(create_app(sim=self.sim), base_url="http://stripe.test")
        self.requests = 0

    def client(self) -> ApiClient:
        def forward(request: httpx.Request) -> httpx.Response:
            self.requests += 1
            reply = self.http.request(request.method, request.url.raw_path.decode(), headers=request.headers)
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
        return ApiClient("stripe", "http://stripe.test", None, transport=httpx.MockTransport(forward),
                         headers={"Authorization": f"Bearer {KEY}"}, max_retries=0, sleep=lambda s: None,
                         signals=spec_for("stripe").signals)

    def now_s(self) -> int:
        return self.sim.clock.now_s()

    def advance(self, seconds: float) -> None:
        self.time.now += seconds

    def mutate(self, count: int, kind: str = "update", collection: str = "customer") -> None:
        """`count` mutations stamped with the current server second."""
        for _ in range(count):
            self.model.mutate(kind, collection)
        self.model.drain_outbox()

    def events_since(self, second: int, collection: str = "customer") -> list[dict]:
        """Every event of the collection created at or after `second`, visible or not (the truth)."""
        types = set(COLLECTIONS[collection].event_types)
        return [entry.data for entry in self.model.events.entries.values()
                if entry.data["created"] >= second and entry.data["type"] in types]

    def live(self, collection: str = "customer") -> dict[str, dict]:
        return {oid: entry.data for oid, entry in self.model.data[collection].entries.items()}


def fingerprint(object_id: str, version: int, data: dict | None) -> tuple[str, int, bytes]:
    return object_id, version, orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def event_fingerprint(event: dict) -> tuple[str, int, bytes]:
    obj = event["data"]["object"]
    return fingerprint(obj["id"], event["created"] * 1000, obj)


def cursor_bytes(cursor: dict) -> int:
    return len(orjson.dumps(cursor))


@dataclass
class Runs:
    """What a sequence of incremental runs committed: observations, and every checkpointed cursor."""

    cursor: dict
    observations: list[Observation] = field(default_factory=list)
    cursors: list[dict] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def run(self, source: StripeSource, client: ApiClient, collection: str = "customer",
            crash_after: int | None = None) -> bool:
        """One incremental run; with `crash_after`, the worker dies after that many committed batches
        (what it produced after them is lost, as Kafka aborts the open transaction). True: it finished."""
        for count, batch in enumerate(_batches(source, client, collection, self.cursor), start=1):
            self.commit(batch)
            if crash_after is not None and count >= crash_after:
                return batch.done
        return True

    def commit(self, batch: Batch) -> None:
        self.observations += batch.observations
        self.cursor = orjson.loads(orjson.dumps(batch.cursor))
        self.cursors.append(self.cursor)
        self.batch_sizes.append(len(batch.observations))

    def emitted(self) -> set[tuple[str, int, bytes]]:
        return {fingerprint(o.id, o.version, o.data) for o in self.observations}

    def newest(self) -> dict[str, Observation]:
        """Per object, the observation the version fence keeps (highest version, later wins a tie)."""
        kept: dict[str, Observation] = {}
        for obs in self.observations:
            if obs.id not in kept or obs.version >= kept[obs.id].version:
                kept[obs.id] = obs
        return kept


def _batches(source: StripeSource, client: ApiClient, collection: str, cursor: dict) -> Iterator[Batch]:
    return source.incremental(client, collection, cursor)
