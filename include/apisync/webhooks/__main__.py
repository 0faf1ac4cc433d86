"""Run the webhook receiver alone: `python -m apisync.webhooks [--host 127.0.0.1] [--port 8090] [--kafka-config FILE]`.

Kafka: the full client config (SASL, TLS, OAuth) from --kafka-config or APISYNC_KAFKA_CONFIG, with
APISYNC_KAFKA_* variables on top (see apisync.kafka.config_loader); APISYNC_KAFKA_BOOTSTRAP alone is enough
for a plain local broker. Secrets from APISYNC_WEBHOOK_SECRETS_<API> (see WebhookSettings.from_env);
metrics to StatsD when APISYNC_STATSD_HOST (or AIRFLOW__METRICS__STATSD_ON) is set (see apisync.metrics).
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

import apisync.apis  # noqa: F401 - registers every API: the receiver's routes come from the registry
from apisync.kafka.config_loader import describe, load_kafka_config
from apisync.kafka.producer import Producer, ProducerConfigError
from apisync.metrics import metrics_from_env
from apisync.webhooks.receiver import PRODUCER_DEFAULTS, WebhookSettings, create_app

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
log = logging.getLogger("apisync.webhooks")


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m apisync.webhooks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--kafka-config", metavar="FILE", default=None,
                        help="Kafka client config, JSON or properties (env APISYNC_KAFKA_CONFIG)")
    args = parser.parse_args(argv)
    try:
        config = load_kafka_config(args.kafka_config, default_bootstrap=DEFAULT_BOOTSTRAP)
        producer = Producer({**PRODUCER_DEFAULTS, **config})
    except ProducerConfigError as exc:  # one line, no traceback: the message names the key, never its value
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("webhook receiver producing to %s", describe(config))
    uvicorn.run(create_app(WebhookSettings.from_env(), producer, metrics_from_env()), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
