"""Delete reconciliation: deletions polling cannot see (GitHub issues) become tombstones, capped."""

from __future__ import annotations

import httpx
import orjson
import pytest
import redis
from sync_helpers import normalize_until_consumed, settings_for, settled_read

from apisync.kafka.reader import read_topic
from apisync.sync import TooManyDeletes, run_backfill, run_reconcile

pytestmark = pytest.mark.integration


def _normalize(kafka_config, redis_url, already: int = 0) -> int:
    """Run the normalizer until it consumed what github.changes gained since `already`; returns the total."""
    total = len(settled_read(kafka_config, "github.changes"))
    normalize_until_consumed("github", kafka_config, redis.Redis.from_url(redis_url), total - already)
    return total


def _tombstoned(kafka_config) -> set[str]:
    last = {}
    for msg in settled_read(kafka_config, "github.records"):
        last[msg.key().decode()] = msg.value()
    return {key for key, value in last.items() if value is None}


def test_reconcile_turns_unseen_deletes_into_tombstones(clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=9, objects=60)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "issue")
    seen = _normalize(kafka_config, redis_url)
    deleted = httpx.post(f"{simulator_url}/_admin/mutate", json={
        "api": "github", "collection": "issue", "count": 2, "kinds": ["delete"]}).json()["mutations"]
    gone = {m["id"] for m in deleted if m["kind"] == "delete"}
    assert gone, "the simulator deleted nothing (only issues without comments can go)"

    dry = run_reconcile(settings, "issue", dry_run=True, max_delete_share=0.2)
    assert dry.deletes == len(gone) and all(i in dry.note for i in gone)
    assert not any(orjson.loads(m.value())["source"] == "reconcile" for m in read_topic(kafka_config, "github.changes"))

    run_reconcile(settings, "issue", dry_run=False, max_delete_share=0.2)
    _normalize(kafka_config, redis_url, already=seen)
    assert _tombstoned(kafka_config) == {f"github.issue.{i}" for i in gone}
    events = [orjson.loads(m.value()) for m in settled_read(kafka_config, "github.events")]
    assert sorted(e["key"] for e in events if e["type"] == "deleted") == sorted(f"github.issue.{i}" for i in gone)


def test_reconcile_refuses_to_delete_more_than_the_cap(clean_slate, kafka_config, redis_url, simulator_url):
    clean_slate(seed=9, objects=60)
    settings = settings_for("github", kafka_config, redis_url, simulator_url)
    run_backfill(settings, "issue")
    _normalize(kafka_config, redis_url)
    httpx.post(f"{simulator_url}/_admin/mutate", json={
        "api": "github", "collection": "issue", "count": 10, "kinds": ["delete"]})
    with pytest.raises(TooManyDeletes, match="more than the 1% cap"):
        run_reconcile(settings, "issue", dry_run=False, max_delete_share=0.01)
    assert not any(orjson.loads(m.value())["source"] == "reconcile" for m in read_topic(kafka_config, "github.changes"))
