"""What every API model shares: mutation records, webhook messages, seeded timelines."""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock

KINDS = ("create", "update", "delete", "transfer")  # transfer: GitHub issues only
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim",
               "Margaret", "Linus", "Guido", "Anita", "John", "Katherine", "Leslie", "Niklaus")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
              "Perlman", "Berners-Lee", "Hamilton", "Torvalds", "van Rossum", "Borg", "Backus",
              "Johnson", "Lamport", "Wirth")
WORDS = ("sync", "ledger", "invoice", "retry", "cursor", "webhook", "backfill", "tombstone", "partition",
         "offset", "replica", "schema", "latency", "quota", "token", "index", "cache", "queue")


@dataclass(frozen=True, slots=True)
class Mutation:
    """One change the engine made: what, which kind, and the version it got."""

    api: str
    collection: str
    id: str
    kind: str
    version: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form for /_admin/mutate."""
        return {"api": self.api, "collection": self.collection, "id": self.id, "kind": self.kind,
                "version": self.version}


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """A webhook the dispatcher must deliver: body bytes plus what the headers need."""

    api: str
    body: bytes
    event: str
    delivery_id: str
    headers: dict[str, str] = field(default_factory=dict)


class ApiModel:
    """Base for the three datasets: a seeded rng, the server clock and an outbox of webhooks."""

    api = ""
    collections: tuple[str, ...] = ()
    seeds_per_collection = False  # whether seed() takes per-collection counts and seed_aged() exists
    mutable: dict[str, tuple[str, ...]] = {}

    def __init__(self, clock: Clock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(f"{self.api}:{seed}")
        self.outbox: list[WebhookMessage] = []

    def seed(self, count: int) -> None:
        """Fill the dataset with `count` objects per collection (no webhooks)."""
        raise NotImplementedError

    def mutate(self, kind: str, collection: str) -> Mutation | None:
        """Apply one mutation now; None if impossible (e.g. nothing left to delete)."""
        raise NotImplementedError

    def truth(self) -> dict[str, Any]:
        """Every live object's version and data, and the deleted ids."""
        raise NotImplementedError

    def delete_now(self, collection: str, oid: str) -> Mutation | None:
        """Delete one given object now (fault injection between list and fetch)."""
        raise NotImplementedError

    def drain_outbox(self) -> list[WebhookMessage]:
        """Hand pending webhooks to the caller."""
        out, self.outbox = self.outbox, []
        return out

    def seed_order(self, sizes: Mapping[str, int], first: str) -> list[str]:
        """`sizes[collection]` creations per collection shuffled into one timeline; `first` leads (the
        others may need one of it to exist, e.g. a customer to bill)."""
        order = [collection for collection, size in sizes.items() for _ in range(size)]
        self.rng.shuffle(order)
        if first in order:
            order.remove(first)
            order.insert(0, first)
        return order

    def seed_times(self, count: int, span_days: int = 45) -> list[int]:
        """Ascending whole-second times over the past `span_days`, with many same-second ties."""
        now = self.clock.now_s()
        return self.times_between(count, now - span_days * 86400, now - 120)

    def times_between(self, count: int, start: int, end: int) -> list[int]:
        """Ascending whole-second times in [start, end], with many same-second ties."""
        times = sorted(self.rng.randint(start, end) for _ in range(count))
        for i in range(1, len(times)):
            if self.rng.random() < 0.35:
                times[i] = times[i - 1]  # ties are common upstream: make them common here
        return times

    def person(self) -> tuple[str, str]:
        """A (first, last) name pair."""
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def phrase(self, words: int = 3) -> str:
        """A few words of filler text."""
        return " ".join(self.rng.choice(WORDS) for _ in range(words)).capitalize()
