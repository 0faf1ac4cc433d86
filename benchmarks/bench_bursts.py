"""Memory and checkpoint size of the incremental walks under bursts of 1x, 10x and 30x their dedupe memory.

A burst larger than a walk's memory must cost re-reads, never memory or a checkpoint that grows with it
(Kafka refuses a checkpoint over 1 MB). Each walk's API is elsewhere, so the numbers are the walk's alone:
GitHub's newest-first PR walk against a fake `/pulls` whose pages are computed per request (its bound:
2,000 remembered objects), Stripe's event window against the simulator over HTTP (its bound: 1,000
remembered event ids). For each, a burst of 1x, 10x and 30x the bound between two polls; the rows give
the walk's peak traced Python heap (tracemalloc, in this process), the peak RSS of a process that runs
nothing but the walk (`bursts_worker.py`, VmHWM: interpreter and imports included, so it shows what an
operator sees) and the largest checkpoint. Below the bound memory grows with the burst (the dedupe memory
fills); past it, it must not: the 30x/10x ratio of each is the check (flat: about 1x). The bounded cache
of wire-format stamps is filled first, so it weighs the same in every run.
"""

from __future__ import annotations

import gc
import subprocess
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import httpx
import orjson
from common import BENCH_DIR, STRIPE_TOKEN, Row, python, worker_env

CHECKPOINT_LIMIT = 64_000
FLAT = 1.5  # the most a 30x burst may cost over a 10x one: past the bound, memory is flat (a leak: ~3x)


def measure(batches: Callable[[], Iterable]) -> tuple[int, int, int]:
    """(peak traced heap in bytes, largest checkpoint in bytes, observations) of one walk, batch by batch."""
    gc.collect()
    tracemalloc.start()
    try:
        largest, observations = walk_through(batches())
        return tracemalloc.get_traced_memory()[1], largest, observations
    finally:
        tracemalloc.stop()


def walk_through(batches: Iterable) -> tuple[int, int]:
    """(largest checkpoint in bytes, observations) of a walk, keeping nothing but the two numbers."""
    largest = observations = 0
    for batch in batches:
        largest = max(largest, len(orjson.dumps(batch.cursor)))
        observations += len(batch.observations)
    return largest, observations


def fill_stamp_cache() -> None:
    """Fill the bounded cache of wire-format stamps: in every run it is full, so it weighs the same."""
    from apisync.formats import ms_to_iso

    for ms in range(ms_to_iso.cache_info().maxsize):
        ms_to_iso(ms)


def github_prs(burst: int) -> Callable[[], Iterable]:
    """The newest-first PR walk over `burst` PRs changed since the last poll (its batches, on each call)."""
    from apisync.apis.github.source import GitHubSource
    from apisync.events import iso_to_ms, ms_to_iso
    from apisync.http import ApiClient, BearerTokenAuth
    from apisync.registry import spec_for

    since = iso_to_ms("2034-01-15T07:00:00Z")

    def pull(number: int) -> dict:
        # Newest first is highest number first: updated_at rises with the number, four PRs per second.
        return {"number": number, "state": "open", "title": f"pr {number}",
                "created_at": ms_to_iso(since - 86_400_000), "updated_at": ms_to_iso(since + 1000 + number // 4 * 1000)}

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/repos/o/r":
            return httpx.Response(200, json={"id": 1, "full_name": "o/r"})
        size, page = int(request.url.params.get("per_page", 30)), int(request.url.params.get("page", 1))
        headers = {"Date": "Sun, 15 Jan 2034 08:00:00 GMT"}
        if page * size < burst:
            headers["link"] = f'<{request.url.copy_merge_params({"page": page + 1})}>; rel="next"'
        top = burst - (page - 1) * size
        return httpx.Response(200, json=[pull(n) for n in range(top, max(0, top - size), -1)], headers=headers)

    client = ApiClient("github", "https://api.github.test", BearerTokenAuth("t"), transport=httpx.MockTransport(serve),
                       signals=spec_for("github").signals)
    cursor = {"repos": {"o/r": {"since": ms_to_iso(since), "recent": []}}}
    return lambda: GitHubSource("o/r", page_size=100).incremental(client, "pull_request", cursor)


def stripe_burst(simulator_url: str, burst: int) -> dict:
    """Make `burst` customer changes in the simulator, spread over half a settle window; returns the
    incremental cursor of the poll before them."""
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
    return cursor


def stripe_events(simulator_url: str, cursor: dict) -> Callable[[], Iterable]:
    """Stripe's event window from `cursor` (the simulator over HTTP, in its own process: its memory is not
    the walk's); its batches, on each call."""
    from apisync.apis.stripe.source import StripeSource
    from apisync.http import ApiClient
    from apisync.registry import spec_for

    def batches() -> Iterator:
        client = ApiClient("stripe", simulator_url, None, headers={"Authorization": f"Bearer {STRIPE_TOKEN}"},
                           signals=spec_for("stripe").signals)
        try:
            yield from StripeSource().incremental(client, "customer", cursor)
        finally:
            client.close()
    return batches


def walk_in_a_process(args: list[str]) -> tuple[int, int]:
    """(peak RSS, RSS just before the walk), in bytes, of `bursts_worker.py <args>`: the walk alone."""
    done = subprocess.run([python(), str(BENCH_DIR / "bursts_worker.py"), *args], capture_output=True, text=True,
                          env=worker_env(), timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"burst worker failed: {done.stderr[-500:]}")
    line = orjson.loads(done.stdout.strip().splitlines()[-1])
    return line["rss"], line["before"]


def github_runs(burst: int) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """The PR walk over `burst` changes: in this process (heap), then in a process of its own (RSS)."""
    heap = measure(github_prs(burst))
    return heap, walk_in_a_process(["github", str(burst)])


def stripe_runs(simulator_url: str, burst: int) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """Stripe's event window over `burst` changes: in this process (heap), then in a process of its own (RSS),
    both reading the same simulator state."""
    cursor = stripe_burst(simulator_url, burst)
    heap = measure(stripe_events(simulator_url, cursor))
    return heap, walk_in_a_process(["stripe", str(burst), simulator_url, orjson.dumps(cursor).decode()])


def run(stack) -> list[Row]:
    fill_stamp_cache()
    walks = (("github PRs newest first", github_runs, 2_000),
             ("stripe event window", partial(stripe_runs, stack.simulator_url), 1_000))
    rows = []
    for name, walk, bound in walks:
        runs = [walk(times * bound) for times in (1, 10, 30)]
        one, ten, thirty = (heap for heap, _rss in runs)
        rss = [peak for _heap, (peak, _before) in runs]
        grown = [peak - before for _heap, (peak, before) in runs]
        heap_ratio, checkpoint_ratio, rss_ratio = thirty[0] / ten[0], thirty[1] / ten[1], rss[2] / rss[1]
        sizes = f"{bound:,} / {10 * bound:,} / {30 * bound:,} changes"
        rows.append(Row(f"burst, {name}", f"peak heap of the walk, {sizes}",
                        " / ".join(f"{run[0] / 2**20:.1f}" for run in (one, ten, thirty)) + " MiB",
                        f"{heap_ratio:.2f}x 30x/10x", f"<= {FLAT}x", heap_ratio <= FLAT,
                        note=f"{thirty[2]:,} observations"))
        rows.append(Row(f"burst, {name}", f"peak RSS of a process running only the walk, {sizes}",
                        " / ".join(f"{peak / 2**20:.0f}" for peak in rss) + " MiB",
                        f"{rss_ratio:.2f}x 30x/10x", f"<= {FLAT}x", rss_ratio <= FLAT,
                        note="the walk's own: " + " / ".join(f"{g / 2**20:.1f}" for g in grown) + " MiB above its "
                             "process before it"))
        rows.append(Row(f"burst, {name}", f"largest checkpoint, {sizes}",
                        " / ".join(f"{run[1]:,}" for run in (one, ten, thirty)) + " B",
                        f"{checkpoint_ratio:.2f}x 30x/10x", f"<= {FLAT}x, <= 64 KB",
                        checkpoint_ratio <= FLAT and thirty[1] <= CHECKPOINT_LIMIT))
    return rows
