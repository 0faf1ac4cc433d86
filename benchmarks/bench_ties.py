"""Requests per page on an all-ties listing: every object shares one change second (GitHub `updated_at`,
Salesforce `SystemModstamp`), the case where a walk keyed on the change time cannot move forward by it.

The simulator is reset empty and `n` objects are created in one admin call (one server second; the
call is repeated in the rare case it straddles a second). Then a backfill of that one collection runs
with small pages, and the simulator's request count for the api is compared with the pages walked, at
three sizes doubling each time: linear means each doubling costs the same requests per added page.
Runs last: the reset drops the simulator's seeded dataset.
"""

from __future__ import annotations

import uuid

import httpx
from common import Row, Stack

PAGE = 25
SIZES = (100, 200, 400)
CASES = (("github", "issue"), ("salesforce", "account"))


def all_ties(stack: Stack, api: str, collection: str, count: int) -> None:
    for _attempt in range(5):
        httpx.post(f"{stack.simulator_url}/_admin/reset", json={"seed": 3, "objects": 0}, timeout=60).raise_for_status()
        done = httpx.post(f"{stack.simulator_url}/_admin/mutate", timeout=60, json={
            "api": api, "collection": collection, "count": count, "kinds": ["create"]}).json()["mutations"]
        if len(done) == count and len({m["version"] for m in done}) == 1:
            return
    raise RuntimeError(f"could not create {count} {api} {collection} objects in one second")


def walk(stack: Stack, api: str, collection: str, count: int) -> tuple[int, int]:
    """(requests, pages) of one backfill over `count` tied objects."""
    from apisync.settings import ApiSettings, SyncSettings
    from apisync.sync import run_backfill
    from devstack.airflow import SIMULATOR_TOKENS

    all_ties(stack, api, collection, count)
    extra = {"repos": ["apisync/demo", "apisync/tools"], "page_size": PAGE, "account": f"ties-{uuid.uuid4().hex[:6]}"}
    settings = SyncSettings(stack.kafka_config, stack.redis_url,
                            ApiSettings(api, stack.simulator_url, SIMULATOR_TOKENS[api], extra, rate_per_s=10_000.0,
                                        burst=100))
    before = stack.simulator_requests(api)
    summary = run_backfill(settings, collection, restart=True)
    if summary.records != count:
        raise RuntimeError(f"{api} {collection}: the backfill delivered {summary.records} of {count} tied objects")
    return stack.simulator_requests(api) - before, summary.pages


def run(stack: Stack) -> list[Row]:
    stack.ensure_topics()
    # The simulator commits a share of Salesforce writes seconds late, as Salesforce does (its default),
    # which would hide some of the tied objects from a backfill started at once: the incremental sync's
    # job, not what this path measures (requests per page).
    stack.simulator_config({"salesforce_late_commits": {"share": 0}})
    rows = []
    for api, collection in CASES:
        runs = [walk(stack, api, collection, n) for n in SIZES]
        # Linear: each doubling adds the same requests per added page (a quadratic walk's would grow).
        slopes = [(r2 - r1) / (p2 - p1) for (r1, p1), (r2, p2) in zip(runs, runs[1:], strict=False)]
        rows.append(Row(f"ties: {api} {collection}", f"{'/'.join(map(str, SIZES))} objects in one second, "
                        f"{PAGE} per page", " / ".join(f"{r} req for {p} pages" for r, p in runs),
                        " then ".join(f"+{slope:.2f}" for slope in slopes) + " req per added page",
                        "linear in pages", max(slopes) <= 1.2 * min(slopes)))
    return rows
