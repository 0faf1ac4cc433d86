"""Run the webhook receiver alone: `python -m apisync.webhooks [--host 127.0.0.1] [--port 8090]`.

Kafka from APISYNC_KAFKA_BOOTSTRAP; secrets from APISYNC_WEBHOOK_SECRETS_<API> (see WebhookSettings.from_env);
metrics to StatsD when APISYNC_STATSD_HOST (or AIRFLOW__METRICS__STATSD_ON) is set (see apisync.metrics).
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from apisync.kafka.producer import Producer
from apisync.metrics import metrics_from_env
from apisync.webhooks.receiver import PRODUCER_DEFAULTS, WebhookSettings, create_app


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m apisync.webhooks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("APISYNC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    producer = Producer({**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap})
    uvicorn.run(create_app(WebhookSettings.from_env(), producer, metrics_from_env()), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
