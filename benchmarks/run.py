"""`make bench`: start the services, run every path in this one process run, print one table.

    python benchmarks/run.py [--only producer,backfill,...] [--scales 100000,1000000] [--ratelimit-s 20]

Ratios divide by the raw producer baseline measured first in the same run (same broker, same message
size, same machine load), so they are what to compare between machines; absolute numbers are noisy
on a shared machine. The producer baseline always runs (every ratio needs it).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time

import psutil
from common import Row, Stack

PATHS = ("producer", "backfill", "normalizer", "ratelimit", "memory", "bursts", "webhooks", "refetch", "ties")


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = ", load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return (f"{psutil.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, Kafka 4.1.1 (1 broker, devstack){load}")


def table(rows: list[Row]) -> str:
    header = ("path", "measured", "result", "vs baseline", "target", "met")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        cells = (row.path, row.measure, row.value + (f" ({row.note})" if row.note else ""), row.ratio, row.target, met)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PATHS), help=f"comma-separated subset of {', '.join(PATHS)}")
    parser.add_argument("--scales", default="100000,1000000",
                        help="object counts for the memory path (about 4 of the run's minutes)")
    parser.add_argument("--ratelimit-s", type=float, default=20.0, help="length of the shared-budget run")
    return parser.parse_args(argv)


def run_path(name: str, stack: Stack, args: argparse.Namespace) -> list[Row]:
    module = __import__(f"bench_{name}")
    if name == "memory":
        return module.run(stack, [int(s) for s in args.scales.split(",") if s])
    if name == "ratelimit":
        return module.run(stack, args.ratelimit_s)
    return module.run(stack)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = ["producer"] + [p for p in args.only.split(",") if p and p != "producer"]
    unknown = sorted(set(chosen) - set(PATHS))
    if unknown:
        raise SystemExit(f"unknown path(s): {', '.join(unknown)}; known: {', '.join(PATHS)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    began = time.monotonic()
    print("[bench] starting Kafka, Redis and the API simulator ...", flush=True)
    stack = Stack.start()
    rows: list[Row] = []
    try:
        for name in chosen:
            started = time.monotonic()
            print(f"[bench] {name} ...", flush=True)
            try:
                rows += run_path(name, stack, args)
            except Exception as exc:  # one broken path must not hide the others' numbers
                rows.append(Row(name, "failed", f"{type(exc).__name__}: {str(exc)[:120]}", met=False))
            print(f"[bench] {name} done in {time.monotonic() - started:.0f}s", flush=True)
    finally:
        stack.close()
    print()
    print(f"Machine: {machine()}")
    print(f"Whole run: {time.monotonic() - began:.0f}s")
    print()
    print(table(rows))
    print()
    print("Ratios divide by the raw producer baseline above; the targets are the project's. A missed target is a")
    print("finding, not a failure: the exit code is non-zero only when a path could not be measured.")
    return 1 if any(row.measure == "failed" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
