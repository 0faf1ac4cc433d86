"""One incremental walk under a burst, in a process of its own, for the burst benchmark; prints one JSON line.

    python benchmarks/bursts_worker.py github <burst>
    python benchmarks/bursts_worker.py stripe <burst> <simulator url> <cursor json>

The line: {"rss": peak RSS in bytes (VmHWM), "before": RSS in bytes just before the walk (interpreter, imports,
stamp cache), "checkpoint": largest checkpoint in bytes, "observations": n}.
The process does nothing but the walk (the Stripe burst is made in the simulator beforehand, by the
benchmark), so its peak is the walk's, the interpreter and its imports included.
"""

from __future__ import annotations

import sys

import orjson
from bench_bursts import fill_stamp_cache, github_prs, stripe_events, walk_through
from common import peak_rss


def current_rss() -> int:
    """This process's resident memory now, in bytes (VmRSS)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def main(walk: str, burst: str, *rest: str) -> int:
    fill_stamp_cache()
    if walk == "github":
        batches = github_prs(int(burst))
    else:
        simulator_url, cursor = rest
        batches = stripe_events(simulator_url, orjson.loads(cursor))
    before = current_rss()
    largest, observations = walk_through(batches())
    print(orjson.dumps({"rss": peak_rss(), "before": before, "checkpoint": largest,
                        "observations": observations}).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
