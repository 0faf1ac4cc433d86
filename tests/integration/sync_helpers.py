"""Shared checks for the sync tests: read `<api>.changes`, fetch the simulator's ground truth."""

from __future__ import annotations

import httpx
import orjson

from apisync.kafka.reader import read_topic
from apisync.normalizer import open_normalizer
from apisync.settings import ApiSettings, SyncSettings
from apisync.sources.salesforce import OBJECTS as SALESFORCE_OBJECTS
from devstack.airflow import SIMULATOR_TOKENS


def settings_for(api: str, kafka_config: dict, redis_url: str, simulator_url: str, rate: float = 200,
                 page_size: int | None = None) -> SyncSettings:
    extra = {"repos": ["apisync/demo"], "page_size": page_size}
    return SyncSettings(kafka_config, redis_url,
                        ApiSettings(api, simulator_url, SIMULATOR_TOKENS[api], extra, rate_per_s=rate, burst=20))


def changes(kafka_config: dict, api: str) -> list[dict]:
    """Every committed observation on `<api>.changes`, in offset order per partition."""
    return [orjson.loads(m.value()) for m in read_topic(kafka_config, f"{api}.changes", timeout=60)]


def newest_per_key(observations: list[dict]) -> dict[str, dict]:
    """What the normalizer would keep: the highest version per key (later offset wins a tie)."""
    newest: dict[str, dict] = {}
    for obs in observations:
        current = newest.get(obs["key"])
        if current is None or obs["version"] >= current["version"]:
            newest[obs["key"]] = obs
    return newest


def normalize_until_consumed(api: str, kafka_config: dict, redis_client, expected: int, **options) -> int:
    """Run one normalizer until it consumed `expected` messages (or 60 one-second rounds); returns the count."""
    normalizer = open_normalizer(api, kafka_config, redis_client, poll_timeout=0.5, **options)
    consumed = 0
    try:
        for _ in range(60):
            consumed += normalizer.run(max_seconds=1.0).consumed
            if consumed >= expected:
                break
    finally:
        normalizer.close()
    return consumed


def truth(simulator_url: str, api: str) -> dict:
    return httpx.get(f"{simulator_url}/_admin/truth/{api}", timeout=30).json()


def comparable(api: str, collection: str, data: dict) -> dict:
    """Salesforce rows hold the declared fields only (SOQL has no SELECT *)."""
    if api == "salesforce":
        fields = SALESFORCE_OBJECTS[collection][1]
        return {f: data.get(f) for f in fields}
    return data


def live_mismatches(api: str, collections, newest: dict[str, dict | None], ground: dict) -> list[str]:
    """Keys whose newest observation or record differs from the truth (missing, stale or wrongly deleted).

    `newest` maps record keys to an observation or a record value (None for a tombstone).
    """
    problems = []
    for collection in collections:
        for object_id, entry in ground["objects"].get(collection, {}).items():
            key = f"{api}.{collection}.{object_id}"
            obs = newest.get(key)
            if key not in newest:
                problems.append(f"missing {collection} {object_id}")
            elif obs is None or obs.get("deleted"):
                problems.append(f"{collection} {object_id} is live but observed deleted")
            elif comparable(api, collection, obs["data"]) != comparable(api, collection, entry["data"]):
                problems.append(f"stale {collection} {object_id}")
    return problems
