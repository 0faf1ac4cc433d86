"""Webhooks: intake latency of the receiver alone at 500 req/s, and freshness (webhook sent → record
committed on `<api>.records`) with one normalizer process running.

Signed Stripe `customer.updated` events, one new customer each, sent open-loop (on schedule, not after
the previous answer) from this process over keep-alive HTTP/1.1 connections (up to 100, one request
at a time each). The requests are encoded before the clock starts; a request's latency runs from its
scheduled start, as this event loop got to it (waiting for a free connection or opening one
included), to the last byte of its answer. The client is an asyncio protocol on uvloop with httptools
parsing the answers (uvicorn's own loop and parser): httpx cost ~1.5 ms of CPU per request, more
than the receiver itself, on the same two cores. Intake: the receiver verifies, produces to Kafka and
answers only after the acknowledgement (acks=all); the row also gives the receiver's process CPU time
per request. Freshness: a read_committed consumer in this process tails the records topic and notes
when each customer's record became visible.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from urllib.parse import urlsplit

import httptools
import orjson
import psutil
import uvloop
from bench_normalizer import WorkerGroup
from common import BENCH_DIR, Row, Stack, percentile, python, worker_env

SECRET = "whsec_bench"
INTAKE_RATE, INTAKE_S = 500, 5
FRESH_RATE, FRESH_S = 100, 10


def events(count: int, run: str) -> list[tuple[str, bytes, dict]]:
    """(customer id, body, headers) of `count` signed Stripe events."""
    from api_simulator.signing import stripe_signature

    now, out = int(time.time()), []
    for i in range(count):
        ident = f"cus_{run}{i:08d}"
        body = orjson.dumps({"id": f"evt_{run}{i:08d}", "object": "event", "type": "customer.updated",
                             "created": now, "data": {"object": {
                                 "id": ident, "object": "customer", "email": f"{ident}@example.com",
                                 "name": f"Customer {i}", "balance": i, "created": now - 3600, "currency": "usd",
                                 "livemode": False, "metadata": {"run": run}, "delinquent": False}}})
        out.append((ident, body, {"Stripe-Signature": stripe_signature(body, [SECRET], now),
                                  "Content-Type": "application/json"}))
    return out


MAX_CONNECTIONS = 100


class KeepAliveConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time; httptools parses the answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future | None = None
        self._keep_alive = True

    async def post(self, request: bytes) -> int:
        """Send one encoded request; the status code of its answer once the answer was read whole."""
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.transport.close()

    def on_message_complete(self) -> None:  # httptools' callback: the whole answer is in
        self._keep_alive = self._parser.should_keep_alive()  # only valid until the parser resets
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the receiver closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)


class OpenLoopClient:
    """Posts pre-encoded requests over a pool of keep-alive connections, opening one when none is idle."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[KeepAliveConnection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def post(self, request: bytes) -> int:
        async with self._slots:
            connection = self._idle_connection() or await self._connect()
            status = await connection.post(request)
            if connection.reusable:
                self._idle.append(connection)
            return status

    def _idle_connection(self) -> KeepAliveConnection | None:
        while self._idle:  # uvicorn closes a connection idle for 5 s (timeout_keep_alive)
            connection = self._idle.pop()
            if connection.reusable:
                return connection
        return None

    async def _connect(self) -> KeepAliveConnection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(KeepAliveConnection, "127.0.0.1", self._port)
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.transport.close()


def encoded(url: str, body: bytes, headers: dict) -> bytes:
    """The whole HTTP/1.1 request, so that sending it costs the load generator one write."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_client(coroutine):
    """Run the load generator on uvloop, the loop uvicorn serves the receiver with."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def send_all(url: str, items: list[tuple[str, bytes, dict]], rate: float,
                   failures: list | None = None) -> tuple[list[float], dict, float]:
    """Open-loop load; (latencies in s of the stored ones, send time per customer id, achieved rate).

    Answers other than 200 (and broken connections) go to `failures` if given, else raise."""
    latencies: list[float] = []
    sent: dict[str, float] = {}
    failed: list = [] if failures is None else failures
    requests = [(ident, encoded(url, body, headers)) for ident, body, headers in items]
    client = OpenLoopClient(urlsplit(url).port)

    async def one(ident: str, request: bytes) -> None:
        started = time.perf_counter()
        sent[ident] = time.time()
        try:
            async with asyncio.timeout(15):
                status = await client.post(request)
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            failed.append(type(exc).__name__)
            return
        if status != 200:
            failed.append(status)
            return
        latencies.append(time.perf_counter() - started)

    tasks, began = [], time.perf_counter()
    for index, (ident, request) in enumerate(requests):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(ident, request)))
    achieved = len(requests) / (time.perf_counter() - began)
    await asyncio.gather(*tasks)
    client.close()
    if failed and failures is None:
        raise RuntimeError(f"{len(failed)} webhooks were not stored ({failed[0]})")
    return latencies, sent, achieved


class Receiver:
    """webhook_server.py on a free port, writing under `prefix`."""

    def __init__(self, stack: Stack, prefix: str) -> None:
        from devstack.process import free_port

        self.port = free_port()
        self.process = subprocess.Popen([python(), str(BENCH_DIR / "webhook_server.py"), stack.kafka_bootstrap,
                                         str(self.port), prefix, SECRET], stdout=subprocess.PIPE, env=worker_env(),
                                        text=True)
        if "listening" not in (self.process.stdout.readline() or ""):
            raise RuntimeError("the webhook receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/stripe"

    def cpu_s(self) -> float:
        """CPU time the receiver process used so far (all its threads, librdkafka's included)."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def tail_records(stack: Stack, topic: str, seen: dict[str, float], stop: threading.Event) -> None:
    """Note when each record key first became visible (read_committed)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**stack.kafka_config, "group.id": f"bench-tail-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None and msg.key():
                    seen.setdefault(msg.key().decode().rsplit(".", 1)[-1], time.time())
    finally:
        consumer.close()


def intake(stack: Stack, rate: int, seconds: float, target: bool) -> Row:
    """p50/p99 at `rate` in a fresh receiver (a saturated one would carry its backlog into the next rate)."""
    ns = stack.namespace()
    receiver = Receiver(stack, ns)
    failures: list = []
    try:
        run_client(send_all(receiver.url, events(100, f"w{rate}"), 100))  # warm-up: connections, metadata
        measured = events(int(rate * seconds), f"i{rate}")
        cpu_before = receiver.cpu_s()
        latencies, _sent, achieved = run_client(send_all(receiver.url, measured, rate, failures))
        cpu_ms = (receiver.cpu_s() - cpu_before) / len(measured) * 1000
    finally:
        receiver.stop()
        stack.drop(ns)
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    note = f"{len(failures)} not stored (503 or dropped)" if failures else ""
    return Row("webhook intake (receiver alone)", f"{len(latencies) + len(failures):,} signed events at "
               f"{achieved:.0f} req/s", f"p50 {p50:,.1f} ms, p99 {p99:,.1f} ms; receiver CPU {cpu_ms:.2f} ms/req",
               "", "p99 < 50 ms" if target else "", p99 < 50 and not failures if target else None, note)


def freshness(stack: Stack) -> Row:
    ns = stack.namespace()
    group, receiver = WorkerGroup(stack, ns, 1), Receiver(stack, ns)
    seen: dict[str, float] = {}
    stop = threading.Event()
    tail = threading.Thread(target=tail_records, args=(stack, f"{ns}stripe.records", seen, stop), daemon=True)
    try:
        group.wait_assigned(6)
        tail.start()
        _lat, sent, _rate = run_client(send_all(receiver.url, events(FRESH_RATE * FRESH_S, "f"), FRESH_RATE))
        deadline = time.monotonic() + 60
        while len(set(sent) & set(seen)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        receiver.stop()
        group.stop()
        if tail.is_alive():
            tail.join(5)
        stack.drop(ns)
    ages = [seen[ident] - sent[ident] for ident in sent if ident in seen]
    if len(ages) < len(sent):
        raise RuntimeError(f"only {len(ages)} of {len(sent)} webhooks reached the records topic")
    p50, p95 = percentile(ages, 0.50), percentile(ages, 0.95)
    return Row("freshness: webhook → record", f"{len(ages):,} webhooks at {FRESH_RATE} req/s, 1 normalizer",
               f"p50 {p50:.2f} s, p95 {p95:.2f} s", "", "p95 < 5 s", p95 < 5)


def run(stack: Stack) -> list[Row]:
    return [intake(stack, 200, INTAKE_S, target=False), intake(stack, INTAKE_RATE, INTAKE_S, target=True),
            freshness(stack)]
