"""Memory and checkpoint size of the incremental walks under bursts of 1x, 10x and 30x their dedupe memory.

A burst larger than a walk's memory must cost re-reads, never memory or a checkpoint that grows with it
(Kafka refuses a checkpoint over 1 MB). Each walk runs in this process, its API elsewhere, so the numbers
are the walk's alone: GitHub's newest-first PR walk against a fake `/pulls` served from a list made
before measuring (its bound: 2,000 remembered objects), Stripe's event window against the simulator over
HTTP (its bound: 1,000 remembered event ids). For each, a burst of 1x, 10x and 30x the bound between
two polls; the rows give the walk's peak traced Python heap (tracemalloc, the dataset
excluded) and its largest checkpoint. Below the bound memory grows with the burst (the dedupe memory
fills); past it, it must not: the 30x/10x ratio of each is the check (flat: about 1x). The bounded cache
of wire-format stamps is filled first, so it weighs the same in every run.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterable
from functools import partial

import httpx
import orjson
from common import STRIPE_TOKEN, Row

CHECKPOINT_LIMIT = 64_000
FLAT = 1.5  # the most a 30x burst may cost over a 10x one: past the bound, memory is flat (a leak: ~3x)


def measure(batches: Callable[[], Iterable]) -> tuple[int, int, int]:
    """(peak traced heap in bytes, largest checkpoint in bytes, observations) of one walk, batch by batch."""
    gc.collect()
    tracemalloc.start()
    try:
        largest = observations = 0
        for batch in batches():
            largest = max(largest, len(orjson.dumps(batch.cursor)))
            observations += len(batch.observations)
        return tracemalloc.get_traced_memory()[1], largest, observations
    finally:
        tracemalloc.stop()


def github_prs(burst: int) -> tuple[int, int, int]:
    """The newest-first PR walk over `burst` PRs changed since the last poll."""
    from apisync.apis import spec_for
    from apisync.events import iso_to_ms, ms_to_iso
    from apisync.http import ApiClient, BearerTokenAuth
    from apisync.sources.github import GitHubSource

    since = iso_to_ms("2034-01-15T07:00:00Z")
    pulls = [{"number": n, "state": "open", "title": f"pr {n}", "created_at": ms_to_iso(since - 86_400_000),
              "updated_at": ms_to_iso(since + 1000 + n // 4 * 1000)} for n in range(1, burst + 1)]
    newest_first = sorted(pulls, key=lambda p: (p["updated_at"], p["number"]), reverse=True)

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/repos/o/r":
            return httpx.Response(200, json={"id": 1, "full_name": "o/r"})
        size, page = int(request.url.params.get("per_page", 30)), int(request.url.params.get("page", 1))
        headers = {"Date": "Sun, 15 Jan 2034 08:00:00 GMT"}
        if page * size < len(newest_first):
            headers["link"] = f'<{request.url.copy_merge_params({"page": page + 1})}>; rel="next"'
        return httpx.Response(200, json=newest_first[(page - 1) * size:page * size], headers=headers)

    client = ApiClient("github", "https://api.github.test", BearerTokenAuth("t"), transport=httpx.MockTransport(serve),
                       signals=spec_for("github").signals)
    cursor = {"repos": {"o/r": {"since": ms_to_iso(since), "recent": []}}}
    return measure(lambda: GitHubSource("o/r", page_size=100).incremental(client, "pull_request", cursor))


def stripe_events(simulator_url: str, burst: int) -> tuple[int, int, int]:
    """Stripe's event window over `burst` customer changes spread over half a settle window (the simulator
    over HTTP, in its own process: its memory is not the walk's)."""
    from apisync.apis import spec_for
    from apisync.http import ApiClient
    from apisync.sources.stripe import StripeSource

    with httpx.Client(base_url=simulator_url, timeout=120) as sim:
        sim.post("/_admin/reset", json={"seed": 3, "objects": 10}).raise_for_status()
        sim.post("/_admin/config", json={"rate_limits": {"stripe": {"per_second": 1_000_000}},
                                         "stripe_events_lag_s": 0}).raise_for_status()
        cursor = {"at": int(sim.get("/_admin/clock").json()["now"]), "seen": {}}
        for second in range(30):
            count = burst // 30 + (second < burst % 30)
            sim.post("/_admin/mutate", json={"api": "stripe", "collection": "customer", "count": count,
                                             "kinds": ["update"]}).raise_for_status()
            sim.post("/_admin/clock", json={"advance_s": 1}).raise_for_status()
        sim.post("/_admin/clock", json={"advance_s": 120}).raise_for_status()  # settled: one window reads it
    client = ApiClient("stripe", simulator_url, None, headers={"Authorization": f"Bearer {STRIPE_TOKEN}"},
                       signals=spec_for("stripe").signals)
    try:
        return measure(lambda: StripeSource().incremental(client, "customer", cursor))
    finally:
        client.close()


def run(stack) -> list[Row]:
    from apisync.formats import ms_to_iso

    for ms in range(ms_to_iso.cache_info().maxsize):  # fill the bounded stamp cache: in every run it is full
        ms_to_iso(ms)
    walks = (("github PRs newest first", github_prs, 2_000),
             ("stripe event window", partial(stripe_events, stack.simulator_url), 1_000))
    rows = []
    for name, walk, bound in walks:
        one, ten, thirty = (walk(times * bound) for times in (1, 10, 30))
        heap_ratio, checkpoint_ratio = thirty[0] / ten[0], thirty[1] / ten[1]
        sizes = f"{bound:,} / {10 * bound:,} / {30 * bound:,} changes"
        rows.append(Row(f"burst, {name}", f"peak heap of the walk, {sizes}",
                        " / ".join(f"{run[0] / 2**20:.1f}" for run in (one, ten, thirty)) + " MiB",
                        f"{heap_ratio:.2f}x 30x/10x", f"<= {FLAT}x", heap_ratio <= FLAT,
                        note=f"{thirty[2]:,} observations"))
        rows.append(Row(f"burst, {name}", f"largest checkpoint, {sizes}",
                        " / ".join(f"{run[1]:,}" for run in (one, ten, thirty)) + " B",
                        f"{checkpoint_ratio:.2f}x 30x/10x", f"<= {FLAT}x, <= 64 KB",
                        checkpoint_ratio <= FLAT and thirty[1] <= CHECKPOINT_LIMIT))
    return rows
