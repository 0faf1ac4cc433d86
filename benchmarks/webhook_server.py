"""The webhook receiver alone, as `python -m apisync.webhooks` runs it, but writing under a topic prefix.

    python benchmarks/webhook_server.py <bootstrap> <port> <topic prefix> <stripe secret>

Same app (`create_app`), same producer settings and uvicorn server as the module entry point; only
the topic prefix (a benchmark namespace) and a quiet access log differ. Prints one line when it listens.
"""

from __future__ import annotations

import sys

import uvicorn

import apisync.apis  # noqa: F401 - registers every API, as `python -m apisync.webhooks` does
from apisync.kafka.producer import Producer
from apisync.webhooks.receiver import PRODUCER_DEFAULTS, WebhookSettings, create_app


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        print("receiver listening", flush=True)


def main(bootstrap: str, port: str, prefix: str, secret: str) -> int:
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})
    app = create_app(WebhookSettings(secrets={"stripe": (secret,)}, topic_prefix=prefix), producer)
    _Server(uvicorn.Config(app, host="127.0.0.1", port=int(port), log_level="warning")).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
