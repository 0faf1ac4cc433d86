"""Airflow pools apisync's DAGs use (no Airflow import: devstack creates them through the REST API).

`apisync_<api>` caps how many sync tasks hit one API account at once (the Redis rate limiter caps
requests per second on top). `apisync_<api>_normalizer` has ONE slot: the normalizer of an API uses
a fixed transactional.id and static group member id, so two at once would fence each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from apisync.catalog import APIS

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


def ensure_pools(client, apis: tuple[str, ...] = APIS) -> list[str]:
    """Create or update the pools through an authenticated Airflow REST client (httpx, base .../api/v2)."""
    done = []
    for pool in declared_pools(apis):
        body = {"name": pool.name, "slots": pool.slots, "description": pool.description}
        answer = client.patch(f"/pools/{pool.name}", json=body)
        if answer.status_code == 404:
            answer = client.post("/pools", json=body)
        answer.raise_for_status()
        done.append(pool.name)
    return done
