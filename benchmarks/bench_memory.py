"""Peak RSS of a backfill process and of a normalizer process at two sizes (10x apart): flat memory
means the larger run peaks at most 1.2x the smaller one.

The backfill reads `benchmarks/fake_stripe.py` (the simulator cannot hold a million customers), through
the real Stripe source, HTTP client, rate limiter, prefetch and page writer, in its own process. The
normalizer is `normalizer_worker.py` on its own namespace. Both report VmHWM (the peak, not the current RSS).
"""

from __future__ import annotations

import subprocess
import time

import orjson
from bench_normalizer import measure
from common import BENCH_DIR, Row, Stack, python, worker_env


def backfill_rss(stack: Stack, objects: int) -> tuple[int, float]:
    """(peak RSS in bytes, objects/s) of one backfill process over `objects` customers."""
    from devstack.process import free_port

    port = free_port()
    server = subprocess.Popen([python(), str(BENCH_DIR / "fake_stripe.py"), str(port), str(objects)],
                              stdout=subprocess.PIPE, env=worker_env(), text=True)
    try:
        if "listening" not in (server.stdout.readline() or ""):
            raise RuntimeError("the fake Stripe listing did not start")
        done = subprocess.run([python(), str(BENCH_DIR / "backfill_worker.py"), stack.kafka_bootstrap,
                               stack.redis_url, f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                              env=worker_env(), timeout=120 + objects / 500)
        if done.returncode != 0:
            raise RuntimeError(f"backfill worker failed: {done.stderr[-500:]}")
        line = orjson.loads(done.stdout.strip().splitlines()[-1])
        if line["records"] != objects:
            raise RuntimeError(f"backfill delivered {line['records']} of {objects} customers")
        return line["rss"], objects / line["seconds"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(stack: Stack, scales: list[int]) -> list[Row]:
    stack.ensure_topics()
    small, large = min(scales), max(scales)
    started = time.monotonic()
    rows = []
    backfill = {n: backfill_rss(stack, n) for n in (small, large)}
    measured = {n: measure(stack, 1, n, seed=11) for n in (small, large)}
    normalizer = {n: (m.obs_s, m.peak_rss) for n, m in measured.items()}
    for name, peaks in (("backfill", {n: v[0] for n, v in backfill.items()}),
                        ("normalizer", {n: v[1] for n, v in normalizer.items()})):
        growth = peaks[large] / peaks[small]
        rows.append(Row(f"memory, {name}", f"peak RSS at {small:,} / {large:,} objects",
                        f"{peaks[small] / 2**20:.0f} MiB / {peaks[large] / 2**20:.0f} MiB",
                        f"{growth:.2f}x", "<= 1.2x", growth <= 1.2))
    rows[-1].note = (f"{large:,}: backfill {backfill[large][1]:,.0f} obj/s, normalizer "
                     f"{normalizer[large][0]:,.0f} obs/s; {time.monotonic() - started:.0f} s")
    return rows
