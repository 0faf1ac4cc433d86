"""Airflow pools apisync's DAGs use (no Airflow import: devstack creates them through the REST API).

`apisync_<api>` caps how many sync tasks hit one API account at once (the Redis rate limiter caps
requests per second on top). `apisync_<api>_normalizer` has ONE slot: the normalizer of an API uses
a fixed transactional.id and static group member id, so two at once would fence each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from apisync.registry import APIS

SYNC_SLOTS = 4


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool: name, slots, description."""

    name: str
    slots: int
    description: str


def sync_pool(api: str) -> str:
    return f"apisync_{api}"


def normalizer_pool(api: str) -> str:
    return f"apisync_{api}_normalizer"


def declared_pools(apis: tuple[str, ...] = APIS) -> list[PoolSpec]:
    """Every pool the DAGs reference."""
    pools = []
    for api in apis:
        pools.append(PoolSpec(sync_pool(api), SYNC_SLOTS, f"apisync: concurrent {api} sync tasks"))
        pools.append(PoolSpec(normalizer_pool(api), 1, f"apisync: the single {api} normalizer"))
    return pools


def ensure_pools(client, apis: tuple[str, ...] = APIS, sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Create or update the pools through an authenticated Airflow REST client (httpx, base .../api/v2)."""
    done = []
    for pool in declared_pools(apis):
        _upsert(client, pool, sleep)
        done.append(pool.name)
    return done


def _upsert(client, pool: PoolSpec, sleep: Callable[[float], None], attempts: int = 5) -> None:
    settings = {"slots": pool.slots, "description": pool.description, "include_deferred": False}
    for attempt in range(attempts):
        # Airflow 3.3: PATCH (without update_mask) wants the whole pool, named `pool`; POST names it `name`.
        answer = client.patch(f"/pools/{pool.name}", json={"pool": pool.name, **settings})
        if answer.status_code == 404:
            answer = client.post("/pools", json={"name": pool.name, **settings})
        # A 5xx here is usually SQLite busy under a scheduler catching up: try again shortly.
        if answer.status_code < 500 or attempt == attempts - 1:
            answer.raise_for_status()
            return
        sleep(1.0 + attempt)
