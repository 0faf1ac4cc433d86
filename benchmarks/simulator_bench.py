"""Throughput of the API simulator: Stripe list pages of 100 objects per second (one server process).

Run: .venv/bin/python benchmarks/simulator_bench.py [--seconds 5] [--objects 2000]
Starts `python -m api_simulator` on a free port (uvicorn, one process = one core for the server),
turns rate limits off, walks /v1/customers with limit=100 from a few client threads, prints pages/s.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"Authorization": "Bearer sk_test_apisync"}


def free_port() -> int:
    """An unused 127.0.0.1 port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, objects: int) -> subprocess.Popen:
    """Launch the simulator and wait for its readiness line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "dev")}
    proc = subprocess.Popen([sys.executable, "-m", "api_simulator", "--port", str(port), "--objects", str(objects)],
                            env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc


def walk(base: str, deadline: float, counts: list[int], index: int) -> None:
    """Page through customers with limit=100 until the deadline, restarting at the end."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=10) as client:
        after = None
        while time.monotonic() < deadline:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            page = client.get("/v1/customers", params=params)
            page.raise_for_status()
            body = page.json()
            assert len(body["data"]) == 100 or not body["has_more"]
            counts[index] += 1
            after = body["data"][-1]["id"] if body["has_more"] else None


def main() -> None:
    """Measure and print pages/s."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    proc = start_server(port, args.objects)
    base = f"http://127.0.0.1:{port}"
    try:
        httpx.post(f"{base}/_admin/config", json={"rate_limits": {"stripe": {"per_second": 0}}}).raise_for_status()
        counts = [0] * args.clients
        deadline = time.monotonic() + args.seconds
        threads = [threading.Thread(target=walk, args=(base, deadline, counts, i)) for i in range(args.clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        print(f"simulator: {sum(counts) / elapsed:.0f} list pages/s of 100 objects "
              f"({sum(counts)} pages in {elapsed:.1f}s, {args.clients} client threads, 1 server process)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
