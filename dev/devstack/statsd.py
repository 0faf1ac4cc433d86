"""A StatsD listener on loopback UDP that keeps what it receives: for tests, and to watch a demo's metrics.

`with StatsdListener() as sink:` binds 127.0.0.1 on a free port; point a StatsD client at
`sink.host, sink.port`, then read `sink.counters()` (summed per name), `sink.gauges()` (last value)
and `sink.timings()` (every value, ms) after `sink.drain()`.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import defaultdict

_MARKER = "devstack.statsd.drained:"  # what drain() sends itself: no StatsD line (name:value|type) looks like it


class StatsdListener:
    """Collects StatsD lines (`name:value|type`, several per packet) in a thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.host, self.port = self._sock.getsockname()
        self.lines: list[str] = []
        self._markers: set[str] = set()  # drain()'s own packets, kept out of `lines`
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-listener", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            lines = [line for line in packet.decode("utf-8", "replace").splitlines() if line]
            with self._lock:
                self._markers.update(line for line in lines if line.startswith(_MARKER))
                self.lines += [line for line in lines if not line.startswith(_MARKER)]

    def drain(self, max_s: float = 120.0) -> list[str]:
        """The lines of every packet sent before this call; call it once the senders are done.

        UDP is asynchronous: a packet sent is in this socket's queue, not yet read. A marker sent now
        queues behind all of them, so once it is read, so are they (a quiet spell would only guess).
        """
        marker = f"{_MARKER}{uuid.uuid4().hex}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(marker.encode(), (self.host, self.port))
        deadline = time.monotonic() + max_s
        while True:
            with self._lock:
                if marker in self._markers:
                    return list(self.lines)
            if time.monotonic() > deadline:
                raise TimeoutError(f"the StatsD listener read nothing for {max_s:.0f}s")
            time.sleep(0.01)

    def _parsed(self, kind: str) -> list[tuple[str, float]]:
        with self._lock:
            lines = list(self.lines)
        out = []
        for line in lines:
            name, _, rest = line.partition(":")
            value, _, rest = rest.partition("|")
            if rest.split("|")[0] == kind:
                out.append((name, float(value)))
        return out

    def counters(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for name, value in self._parsed("c"):
            totals[name] += value
        return dict(totals)

    def gauges(self) -> dict[str, float]:
        return dict(self._parsed("g"))

    def timings(self) -> dict[str, list[float]]:
        values: dict[str, list[float]] = defaultdict(list)
        for name, value in self._parsed("ms"):
            values[name].append(value)
        return dict(values)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)

    def __enter__(self) -> StatsdListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
